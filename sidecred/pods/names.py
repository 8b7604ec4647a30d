"""sidecred's reserved names: the sidecar container, its volumes, paths and command."""

from __future__ import annotations

SIDECAR_NAME = "sidecred"
TOKEN_VOLUME = (
    "sidecred-token"  # memory emptyDir: the endpoint's auth token, written by the sidecar
)
SA_TOKEN_VOLUME = "sidecred-sa-token"  # projected service-account token: the sidecar's only
RESERVED_VOLUMES = (TOKEN_VOLUME, SA_TOKEN_VOLUME)
TOKEN_DIR = "/var/run/sidecred"
TOKEN_FILE = TOKEN_DIR + "/token"
# A container with a role of its own (sidecred.dev/container-roles) gets its own token in
# its own memory emptyDir, mounted into the sidecar and into that container only.
CONTAINER_TOKEN_VOLUME_PREFIX = TOKEN_VOLUME + "-"
SA_TOKEN_DIR = "/var/run/secrets/sidecred/serviceaccount"
SA_TOKEN_FILE = SA_TOKEN_DIR + "/token"
SIDECAR_COMMAND = ["sidecred", "sidecar"]


def container_token_volume(container: str) -> str:
    """`sidecred-token-<container>`: the volume holding that container's own auth token."""
    return CONTAINER_TOKEN_VOLUME_PREFIX + container


def container_token_dir(container: str) -> str:
    """Where that volume is mounted, in the sidecar and in the container alike."""
    return f"{TOKEN_DIR}/{container}"


def container_token_file(container: str) -> str:
    return container_token_dir(container) + "/token"


def is_token_volume(name: str) -> bool:
    """The pod role's token volume or a container's own (every volume an auth token lives in)."""
    return name == TOKEN_VOLUME or name.startswith(CONTAINER_TOKEN_VOLUME_PREFIX)
