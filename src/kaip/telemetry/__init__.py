"""kaip.telemetry."""
