"""A server TLS context that picks up a rotated certificate without a restart.

cert-manager and the kubelet update a mounted Secret in place by swapping a
symlink, so the files' identity (inode, mtime, size) changes. On each TLS
handshake the SNI callback compares that identity (two `stat` calls, at most
once per `check_interval` seconds) and, when it changed, loads the new pair
into a fresh context and hands the handshake to it. A pair that fails to load
(caught half-way through a rotation) is skipped: the previous certificate keeps
serving and the next handshake tries again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL = (
    1.0  # seconds between stat checks; handshakes in between reuse the last answer
)

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


class ReloadingServerContext:
    """Owns the context given to the server and swaps certificates into handshakes."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = (Path(cert_file), Path(key_file))
        self._check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        # Raises (ssl.SSLError, OSError) at start-up: a webhook without a certificate must not start.
        identity = _file_identity(self._paths)
        self.server_context = build_server_context(*self._paths)
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
            try:
                identity = _file_identity(self._paths)
                if identity == self._identity:
                    return self._current
                context = build_server_context(*self._paths)
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS certificate reload failed, keeping the previous one: %s", exc)
                return self._current
            self._current, self._identity = context, identity
            self.reloads += 1
            log.info("TLS certificate reloaded from %s", self._paths[0])
            return context

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        context = self.current_context()
        if context is not self.server_context:
            connection.context = context
