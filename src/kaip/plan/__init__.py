"""kaip.plan."""
