"""kaip.kube."""
