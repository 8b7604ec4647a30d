"""Operator tools: the `kubectl sidecred` plugin (check, status, audit)."""
