"""sidecred: per-pod AWS IAM credentials for Kubernetes."""

__version__ = "0.1.0"
