"""kaip.spec."""
