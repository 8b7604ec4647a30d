"""Local stand-ins used by `sidecred demo`, the tests and the benchmarks.

Shipped in the wheel because the demo runs from it; left out of the runtime
images. Nothing in `sidecred.webhook`, `sidecred.sidecar` or `sidecred.certs`
imports from here.
"""
