"""What the webhook and the broker both serve on: TLS that follows a rotated
certificate, connection limits, the metrics registry and the HTTP error plumbing."""
