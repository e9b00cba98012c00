"""What operators see: redacted structured logs and the lifecycle-event trail."""
