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
SA_TOKEN_DIR = "/var/run/secrets/sidecred/serviceaccount"
SA_TOKEN_FILE = SA_TOKEN_DIR + "/token"
SIDECAR_COMMAND = ["sidecred", "sidecar"]
