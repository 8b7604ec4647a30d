"""The credential broker: the only holder of base credentials, issuing role sessions to pods.

A sidecar presents its projected service-account token (broker audience); the
broker reviews it, reads the pod it is bound to, checks the pod's role against
its namespace's policy as it is now, and answers with credentials from
`sts:AssumeRole` (docs/architecture.md 2.3).
"""
