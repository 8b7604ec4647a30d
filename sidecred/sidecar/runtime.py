"""Running the sidecar: tokens, listeners, one refresh schedule per role, signals and drain.

Everything runs on one thread and one `Reactor`: the two listeners, the
roles' refresh timers and their `sidecred fetch` children.
"""

from __future__ import annotations

import errno
import gc
import signal
import socket

from sidecred.sidecar import log
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import LOOPBACK_HOST, SidecarConfig
from sidecred.sidecar.endpoint import CredentialEndpoint, HealthEndpoint
from sidecred.sidecar.fetch_process import FETCH_COMMAND, FetchProcess
from sidecred.sidecar.reactor import Reactor, Timer
from sidecred.sidecar.refresh_loop import FetchGate, Refresher
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


def auth_token(token_mode: str, token_file: str | None, given: str | None) -> str:
    """Token mode env: the webhook's value. Token mode file: a fresh one, written atomically."""
    if token_mode == "env":
        return given or ""
    token = generate_token()
    write_token_file(token_file or "", token)
    return token


class Role:
    """One role the sidecar keeps fresh: its cache, its fetch child and its schedule."""

    def __init__(
        self,
        reactor: Reactor,
        config: SidecarConfig,
        role_arn: str,
        session_name: str,
        container: str | None,
        gate: FetchGate,
    ) -> None:
        command = FETCH_COMMAND if container is None else (*FETCH_COMMAND, "--container", container)
        policy = DEFAULT_POLICY.replace(backoff_cap_seconds=config.retry_cap_seconds)
        self.container = container
        self.cache = CredentialCache(role_arn, policy=policy)
        self.source = FetchProcess(role_arn, session_name, command)
        fields = {"container": container} if container is not None else {}
        self.refresher = Refresher(reactor, self.cache, self.source, fields, gate)


def build_roles(reactor: Reactor, config: SidecarConfig) -> tuple[CredentialEndpoint, list[Role]]:
    """Every role's token (written to its file in token mode file), cache and schedule.

    The roles share one FetchGate: at most two `sidecred fetch` children at a time.
    """
    roles: list[Role] = []
    gate = FetchGate()
    pod_cache, pod_token = None, None
    if config.role_arn:
        session_name = build_session_name(
            config.pod_namespace, config.pod_name, config.session_name
        )
        pod_token = auth_token(config.token_mode, config.token_file, config.auth_token)
        roles.append(Role(reactor, config, config.role_arn, session_name, None, gate))
        pod_cache = roles[0].cache
    containers = {}
    for entry in config.container_roles:
        token = auth_token(config.token_mode, entry.token_file, entry.auth_token)
        session_name = config.session_name_of(entry)
        role = Role(reactor, config, entry.role_arn, session_name, entry.container, gate)
        roles.append(role)
        containers[entry.container] = (role.cache, token)
    return CredentialEndpoint(pod_cache, pod_token, containers=containers), roles


class Lifecycle:
    """SIGTERM/SIGINT: stop, or in container mode serve on for the drain period first."""

    def __init__(self, reactor: Reactor, config: SidecarConfig) -> None:
        self.reactor = reactor
        self.config = config
        self.signals_seen: list[str] = []
        self.drain_timer: Timer | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            reactor.on_signal(signum, self.on_signal)

    def on_signal(self, signum: int) -> None:
        self.signals_seen.append(signal.Signals(signum).name)
        config = self.config
        if (
            len(self.signals_seen) == 1
            and config.sidecar_mode == "container"
            and config.drain_seconds > 0
        ):
            # Apps in other containers get SIGTERM at the same time and may still need
            # credentials while they shut down; a second signal ends the drain early.
            log.info("draining", signal=self.signals_seen[0], seconds=config.drain_seconds)
            self.drain_timer = self.reactor.call_later(config.drain_seconds, self.reactor.stop)
            return
        self.reactor.stop()


def serve(config: SidecarConfig) -> int:
    reactor = Reactor()
    try:
        return _serve(reactor, config)
    finally:
        reactor.close()


def _serve(reactor: Reactor, config: SidecarConfig) -> int:
    try:
        credentials, roles = build_roles(reactor, config)
    except OSError as exc:
        log.error("token_file_failed", path=getattr(exc, "filename", None), error=str(exc))
        return 1
    health = HealthEndpoint(credentials)
    cred_server = HttpServer(credentials, LOOPBACK_HOST, config.port, reactor=reactor)
    health_server = HttpServer(health, HEALTH_HOST_DUAL_STACK, config.health_port, reactor=reactor)
    try:
        cred_server.start()
        health_server.start(bind_health_socket(config.health_port))
    except OSError as exc:
        log.error("listen_failed", error=str(exc))
        cred_server.close()
        return 1
    lifecycle = Lifecycle(reactor, config)
    _log_started(config, roles, cred_server.port, health_server.port)
    for role in roles:
        role.refresher.start()
    # Everything imported and built so far lives as long as the process: keep
    # it out of the cyclic collector's full passes, which would otherwise
    # stall the credential hot path now and then.
    gc.freeze()
    reactor.run()

    for role in roles:
        role.refresher.stop()
    cred_server.close()
    health_server.close()
    seen = lifecycle.signals_seen
    log.info("stopped", signal=seen[0] if seen else None)
    return 0


def _log_started(config: SidecarConfig, roles: list[Role], port: int, health_port: int) -> None:
    pod_role = next((role for role in roles if role.container is None), None)
    log.info(
        "started",
        role_arn=config.role_arn or None,
        source=config.credential_source,
        session_name=pod_role.source.session_name if pod_role else None,
        containers={
            role.container: role.source.role_arn for role in roles if role.container is not None
        }
        or None,
        session_duration=config.session_duration,
        region=config.region,
        port=port,
        health_port=health_port,
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


def run(config: SidecarConfig) -> int:
    return serve(config)
