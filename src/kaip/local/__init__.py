"""kaip.local."""
