"""kaip.policy."""
