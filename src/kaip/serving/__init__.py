"""kaip.serving."""
