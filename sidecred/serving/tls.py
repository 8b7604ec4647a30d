"""A server TLS context that picks up a rotated certificate without a restart.

cert-manager and the kubelet update a mounted Secret in place by swapping a
symlink, so the files' identity (inode, mtime, size) changes. On each TLS
handshake the SNI callback compares that identity (two `stat` calls, at most
once per `check_interval` seconds) and, when it changed, loads the new pair
into a fresh context and hands the handshake to it. A pair that fails to load
(caught half-way through a rotation) is skipped: the previous certificate keeps
serving and the next handshake tries again.

The loaded certificate's expiry is kept (`not_after`, for the
`sidecred_certificate_expiry_timestamp_seconds` metric) and a warning is logged,
at most once a day, from 30 days before it.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL = (
    1.0  # seconds between stat checks; handshakes in between reuse the last answer
)

EXPIRY_WARNING_SECONDS = 30 * 86400  # warn this long before the serving certificate expires
EXPIRY_WARNING_EVERY = 86400.0  # and repeat the warning at most this often

FileIdentity = tuple[tuple[int, int, int, int], ...]


def _file_identity(paths: tuple[Path, ...]) -> FileIdentity:
    result = []
    for path in paths:
        st = os.stat(path)  # follows the symlink, as the loader does
        result.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(result)


def build_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving `cert_file` with `key_file`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def certificate_not_after(cert_file: Path) -> float:
    """The expiry (Unix time) of the first certificate in `cert_file`, the one served."""
    certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    return certificate.not_valid_after_utc.timestamp()


def expiry_warning(not_after: float, now: float) -> str | None:
    """The warning to log when the certificate is within the warning window, else None."""
    left = not_after - now
    if left > EXPIRY_WARNING_SECONDS:
        return None
    if left <= 0:
        return "the TLS serving certificate has expired; renew it (sidecred certs or cert-manager)"
    return (
        f"the TLS serving certificate expires in {left / 86400:.1f} days; "
        "renew it (sidecred certs or cert-manager)"
    )


class ReloadingServerContext:
    """Owns the context given to the server and swaps certificates into handshakes."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._paths = (Path(cert_file), Path(key_file))
        self._check_interval = check_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._next_warning = 0.0
        self._lock = threading.Lock()
        # Raises (ssl.SSLError, OSError) at start-up: a webhook without a certificate must not start.
        identity = _file_identity(self._paths)
        self.server_context = build_server_context(*self._paths)
        self.not_after = certificate_not_after(self._paths[0])
        self.server_context.sni_callback = self._on_client_hello
        self._current = self.server_context
        self._identity = identity
        self._next_check = clock() + check_interval
        self.reloads = 0

    def current_context(self) -> ssl.SSLContext:
        """The context new handshakes use, reloading the files if they changed."""
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return self._current
            self._next_check = now + self._check_interval
            self._reload_if_changed()
            self._warn_if_expiring()
            return self._current

    def _reload_if_changed(self) -> None:
        try:
            identity = _file_identity(self._paths)
            if identity == self._identity:
                return
            context = build_server_context(*self._paths)
            not_after = certificate_not_after(self._paths[0])
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("TLS certificate reload failed, keeping the previous one: %s", exc)
            return
        self._current, self._identity, self.not_after = context, identity, not_after
        self._next_warning = 0.0
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self._paths[0])

    def _warn_if_expiring(self) -> None:
        now = self._wall_clock()
        warning = expiry_warning(self.not_after, now) if now >= self._next_warning else None
        if warning:
            log.warning(warning)
            self._next_warning = now + EXPIRY_WARNING_EVERY

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        context = self.current_context()
        if context is not self.server_context:
            connection.context = context
