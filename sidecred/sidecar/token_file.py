"""The auth token that app containers send as `Authorization`, and its shared file."""

from __future__ import annotations

import binascii
import os

# 32 random bytes, URL-safe base64 (43 characters): no CR/LF, which SDKs reject.
TOKEN_BYTES = 32

# 0644: the token file lives in a memory emptyDir that only this pod mounts,
# and app containers may run as any UID (with no fsGroup), so the file must be
# readable by all of them. The token is not a secret from the pod's own
# containers (they all get the credentials); it stops requests forged through
# an app (SSRF) that cannot add the header, and nobody outside the pod can
# reach the loopback endpoint or the emptyDir.
TOKEN_FILE_MODE = 0o644


def generate_token() -> str:
    """A fresh endpoint token: made here for token mode file, by the webhook for mode env.

    `secrets.token_urlsafe` without `secrets`, whose imports (hmac, OpenSSL) would
    cost every pod's serving process several megabytes: the same `os.urandom`
    bytes in URL-safe base64 without padding.
    """
    encoded = binascii.b2a_base64(os.urandom(TOKEN_BYTES), newline=False)
    return encoded.rstrip(b"=").translate(_URLSAFE).decode("ascii")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def write_token_file(path: str, token: str) -> None:
    """Write `token` to `path` atomically: a temp file in the same dir, then rename.

    A reader sees either no file or the whole token, never a partial one.
    (`os.open` with O_EXCL rather than `tempfile`, whose imports would cost
    every pod's sidecar about half a megabyte.)
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".token-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token)
            handle.flush()
            os.fchmod(handle.fileno(), TOKEN_FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
