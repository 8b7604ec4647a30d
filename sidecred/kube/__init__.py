"""Kubernetes API access both servers share: the API client, watch caches, pod events
and reading a sidecar's readiness through the pod proxy."""
