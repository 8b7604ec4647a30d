"""Where the webhook and the broker listen: every address of both families by default.

The kubelet probes, and the API server and sidecars connect to, the pod's IP, which
is IPv4, IPv6 or either (dual-stack clusters). With `--host` left empty the server
listens on every IPv4 and every IPv6 address (asyncio binds one socket per family
and skips a family the host does not have). A named host (`--host 127.0.0.1`,
`--host ::`) is that address only.
"""

from __future__ import annotations

BOTH_FAMILIES = ""  # the --host default


def shown_address(host: str) -> str:
    """How a log line names the listening address."""
    return "every IPv4 and IPv6 address" if host == BOTH_FAMILIES else host
