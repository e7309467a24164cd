"""kaip.render."""
