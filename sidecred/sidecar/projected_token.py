"""Reading a projected service-account token (the kubelet rotates it: read it fresh each time)."""

from __future__ import annotations

from sidecred.sidecar.credentials import SourceError


def read_projected_token(path: str, error_code: str) -> str:
    """The token in `path`, stripped; SourceError(`error_code`) naming the file if unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise SourceError(error_code, f"cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise SourceError(error_code, f"{path} is empty")
    return token
