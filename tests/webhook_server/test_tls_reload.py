"""The reloading TLS context serves a rotated certificate to new handshakes."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from sidecred.certs.cli import main as certs_main
from sidecred.serving.tls import ReloadingServerContext
from tests.support.clock import Clock

SERVICE, NAMESPACE = "sidecred", "sidecred-system"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"


def issue(out: Path, *, force: bool = False) -> None:
    args = ["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(out)]
    assert certs_main(args + (["--force"] if force else [])) == 0


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ReloadingServerContext, int, Clock]]:
    """A loopback TLS server that completes handshakes with the reloading context."""
    issue(tmp_path)
    clock = Clock()
    reloading = ReloadingServerContext(
        tmp_path / "tls.crt", tmp_path / "tls.key", check_interval=10.0, clock=clock
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with reloading.server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield reloading, port, clock
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    listener.close()
    thread.join(timeout=5)


def peer_serial(port: int, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def file_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_new_handshakes_see_the_rotated_certificate(tls_server, tmp_path: Path) -> None:
    reloading, port, clock = tls_server
    first = file_serial(tmp_path / "tls.crt")
    assert peer_serial(port, tmp_path / "ca.crt") == first

    issue(tmp_path, force=True)
    second = file_serial(tmp_path / "tls.crt")
    assert second != first
    # Within the check interval the server keeps the certificate it has.
    ca_copy = tmp_path / "ca-new.crt"
    ca_copy.write_bytes((tmp_path / "ca.crt").read_bytes())
    clock.now += 11
    assert peer_serial(port, ca_copy) == second
    assert reloading.reloads == 1


def test_a_broken_pair_keeps_the_previous_certificate(tls_server, tmp_path: Path) -> None:
    reloading, port, clock = tls_server
    first = file_serial(tmp_path / "tls.crt")
    ca_copy = tmp_path / "ca-old.crt"
    ca_copy.write_bytes((tmp_path / "ca.crt").read_bytes())
    (tmp_path / "tls.crt").write_text("not a certificate")
    clock.now += 11
    assert peer_serial(port, ca_copy) == first
    assert reloading.reloads == 0


def test_symlink_swap_is_detected(tmp_path: Path) -> None:
    """The kubelet's atomic update: ..data points at a new directory."""
    issue(tmp_path / "v1")
    issue(tmp_path / "v2")
    data = tmp_path / "..data"
    data.symlink_to("v1")
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    clock = Clock()
    reloading = ReloadingServerContext(
        tmp_path / "tls.crt", tmp_path / "tls.key", check_interval=1.0, clock=clock
    )
    assert reloading.current_context() is reloading.server_context
    tmp_link = tmp_path / "..data_tmp"
    tmp_link.symlink_to("v2")
    tmp_link.replace(data)
    clock.now += 2
    assert reloading.current_context() is not reloading.server_context
    assert reloading.reloads == 1


def test_handshakes_without_sni_also_see_the_rotation(tls_server, tmp_path: Path) -> None:
    """Kubelet probes connect to the pod IP and send no server name."""
    reloading, port, clock = tls_server
    issue(tmp_path, force=True)
    clock.now += 11
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der).serial_number == file_serial(tmp_path / "tls.crt")
    assert reloading.reloads == 1
