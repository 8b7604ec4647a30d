"""Running the sidecar: token, listeners, the refresh task, signals and drain."""

from __future__ import annotations

import asyncio
import errno
import gc
import signal
import socket
from dataclasses import replace

from sidecred.sidecar import log
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import LOOPBACK_HOST, SidecarConfig
from sidecred.sidecar.endpoint import CredentialEndpoint, HealthEndpoint
from sidecred.sidecar.fetch_process import FetchProcess
from sidecred.sidecar.refresh_loop import run_refresh_loop
from sidecred.sidecar.schedule import DEFAULT_POLICY
from sidecred.sidecar.server import HttpServer
from sidecred.sidecar.session_name import build_session_name
from sidecred.sidecar.token_file import generate_token, write_token_file

# The kubelet probes the pod IP, which may be IPv4, IPv6 or either (dual-stack
# clusters): one socket on "::" with IPV6_V6ONLY off takes both; hosts without
# IPv6 get 0.0.0.0. The credentials listener stays on 127.0.0.1 only.
HEALTH_HOST_DUAL_STACK = "::"
HEALTH_HOST_IPV4 = "0.0.0.0"
_NO_IPV6 = {errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT}


def bind_health_socket(port: int, *, dual_stack: bool | None = None) -> socket.socket:
    """A listening socket for the health port: dual-stack `::` where the host has IPv6."""
    if dual_stack is None:
        dual_stack = socket.has_dualstack_ipv6()
    if dual_stack:
        try:
            return socket.create_server(
                (HEALTH_HOST_DUAL_STACK, port), family=socket.AF_INET6, dualstack_ipv6=True
            )
        except OSError as exc:
            if exc.errno not in _NO_IPV6:
                raise  # e.g. the port is taken: IPv4 would fail the same way
    return socket.create_server((HEALTH_HOST_IPV4, port))


def auth_token(config: SidecarConfig) -> str:
    """Token mode env: the webhook's value. Token mode file: a fresh one, written atomically."""
    if config.token_mode == "env":
        return config.auth_token or ""
    token = generate_token()
    write_token_file(config.token_file or "", token)
    return token


async def serve(config: SidecarConfig) -> int:
    try:
        token = auth_token(config)
    except OSError as exc:
        log.error("token_file_failed", path=config.token_file, error=str(exc))
        return 1
    session_name = build_session_name(config.pod_namespace, config.pod_name, config.session_name)
    source = FetchProcess(config.role_arn, session_name)
    policy = replace(DEFAULT_POLICY, backoff_cap_seconds=config.retry_cap_seconds)
    cache = CredentialCache(config.role_arn, policy=policy)
    credentials = CredentialEndpoint(cache, token)
    health = HealthEndpoint(cache, credentials)
    cred_server = HttpServer(credentials, LOOPBACK_HOST, config.port)
    health_server = HttpServer(health, HEALTH_HOST_DUAL_STACK, config.health_port)
    try:
        await cred_server.start()
        await health_server.start(bind_health_socket(config.health_port))
    except OSError as exc:
        log.error("listen_failed", error=str(exc))
        await cred_server.close()
        return 1

    stop_refresh = asyncio.Event()
    terminate = asyncio.Event()
    signals_seen: list[str] = []

    def on_signal(name: str) -> None:
        signals_seen.append(name)
        terminate.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    log.info(
        "started",
        role_arn=config.role_arn,
        source=config.credential_source,
        session_name=source.session_name,
        session_duration=config.session_duration,
        region=config.region,
        port=cred_server.port,
        health_port=health_server.port,
        token_mode=config.token_mode,
        token_file=config.token_file,
        sidecar_mode=config.sidecar_mode,
    )
    if config.credential_source == "assume-role":
        log.warning(
            "unsafe_credential_source",
            source="assume-role",
            reason="base credentials come from the pod's surroundings (the node's instance "
            "metadata), which every container on the node can reach: unsafe for "
            "multi-tenant clusters; use web-identity or broker",
        )
    refresher = asyncio.create_task(run_refresh_loop(cache, source, stop_refresh))
    # Everything imported and built so far lives as long as the process: keep
    # it out of the cyclic collector's full passes, which would otherwise
    # stall the credential hot path now and then.
    gc.freeze()
    await terminate.wait()

    if config.sidecar_mode == "container" and config.drain_seconds > 0:
        # Apps in other containers get SIGTERM at the same time and may still need
        # credentials while they shut down; a second signal ends the drain early.
        log.info("draining", signal=signals_seen[0], seconds=config.drain_seconds)
        terminate.clear()
        try:
            await asyncio.wait_for(terminate.wait(), timeout=config.drain_seconds)
        except TimeoutError:
            pass

    stop_refresh.set()
    refresher.cancel()
    await asyncio.gather(refresher, return_exceptions=True)
    await cred_server.close()
    await health_server.close()
    log.info("stopped", signal=signals_seen[0] if signals_seen else None)
    return 0


def run(config: SidecarConfig) -> int:
    return asyncio.run(serve(config))
