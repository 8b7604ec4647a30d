"""`sidecred broker`: the credential broker over TLS.

It takes the webhook's options (same flags, same `SIDECRED_*` env), so one
ConfigMap defines the policy and the canonical sidecar for admission and for
issuance alike; `--broker-audience` is the audience callers' tokens must carry.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import sys

from kubernetes import client

from sidecred.broker.app import create_app
from sidecred.broker.cluster_keys import ClusterKeys
from sidecred.broker.identity import Identifier
from sidecred.broker.issuer import Issuer
from sidecred.broker.metrics import BrokerMetrics
from sidecred.broker.pod_events import RefusalEvents
from sidecred.broker.sidecar_check import broker_sidecar_problem, projected_sidecar_problem
from sidecred.broker.sts import RoleAssumer
from sidecred.broker.token_review import TokenReviewer
from sidecred.kube.client import KubeConfigUnavailable, load_core_api
from sidecred.kube.event_flags import add_event_arguments, event_settings
from sidecred.kube.projection import PodProjector
from sidecred.kube.watch import NamespaceCache, PodCache
from sidecred.pods.settings import Settings, add_config_arguments, config_from_args
from sidecred.serving.cli import add_server_arguments, configure_logging, shutdown_delay
from sidecred.serving.drain import Drain
from sidecred.serving.listen import shown_address
from sidecred.serving.run import serve_tls
from sidecred.serving.tls import ReloadingServerContext

log = logging.getLogger("sidecred.broker")

BROKER_SOURCE = "broker"
DEFAULT_PORT = 8444


def build_parser() -> argparse.ArgumentParser:
    """Its serving flags and the webhook's options (same flags, same `SIDECRED_*` env)."""
    parser = argparse.ArgumentParser(
        prog="sidecred broker",
        description="Serve the sidecred credential broker (POST /v1/credentials) over TLS.",
    )
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    add_config_arguments(parser)
    add_event_arguments(parser)
    return parser


def load_settings(
    args: argparse.Namespace,
) -> tuple[Settings, ReloadingServerContext, client.CoreV1Api]:
    """The options, the serving certificate and the API client; ValueError saying what is wrong."""
    event_settings(args)  # --events and its neighbours, checked as the webhook checks them
    try:
        config = config_from_args(args)
        tls = ReloadingServerContext(args.tls_cert, args.tls_key)
        api = load_core_api(args.kubeconfig)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot load --tls-cert {args.tls_cert} / --tls-key {args.tls_key}: {exc}"
        ) from None
    except KubeConfigUnavailable as exc:
        raise ValueError(str(exc)) from None
    if config.credential_source != BROKER_SOURCE:
        raise ValueError(
            f"--credential-source is {config.credential_source!r}; the broker serves pods whose "
            "sidecar the webhook built with --credential-source broker, so it takes the same "
            "options (flags or SIDECRED_* env) as that webhook"
        )
    return config, tls, api


def build_issuer(
    config: Settings,
    api: client.CoreV1Api,
    metrics: BrokerMetrics,
    events: RefusalEvents | None,
) -> tuple[Issuer, ClusterKeys, NamespaceCache, PodCache]:
    """The issuer and what it reads (not started): the cluster's signing keys, TokenReviews
    for pods not cached, and the namespace and pod watches. A pod that leaves the pod
    cache is forgotten at once."""
    audience = config.broker_audience
    namespaces = NamespaceCache(api, record_api_call=metrics.record_api_call)
    keys = ClusterKeys(
        api.api_client,
        audience,
        record=metrics.record_signing_key_fetch,
        record_verification=metrics.record_token_verification,
    )
    reviewer = TokenReviewer(api.api_client, audience, record=metrics.record_token_review)

    def pod_removed(key: tuple[str, str], uid: str) -> None:
        """A pod deleted or out of the selector: its credentials and reviews go at once."""
        metrics.forgotten_pods.inc()
        issuer.forget(uid)  # bound below, before the watch starts

    # Each pod is checked against the canonical sidecar as it arrives; the cache keeps
    # the verdict, not the containers.
    projector = PodProjector(
        frozenset({config.annotation_key}), lambda pod: broker_sidecar_problem(pod, config)
    )
    pods = PodCache(api, projector, record_api_call=metrics.record_api_call, on_removed=pod_removed)
    issuer = Issuer(
        config,
        Identifier(keys, reviewer, pods),
        namespaces,
        RoleAssumer(config.region),
        projected_sidecar_problem,
        metrics,
        events=events,
    )
    return issuer, keys, namespaces, pods


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        config, tls, api = load_settings(args)
        drain = Drain(shutdown_delay(args))
    except ValueError as exc:
        message = str(exc).removeprefix("sidecred webhook: ")
        print(f"sidecred broker: {message}", file=sys.stderr)
        return 2
    # urllib3 logs every retry of an unreachable API server; the caches log the outcome.
    logging.getLogger("urllib3").setLevel(logging.ERROR)

    metrics = BrokerMetrics()
    metrics.watch_certificate(lambda: tls.not_after)
    events = None
    if event_settings(args)[0]:
        instance = os.environ.get("SIDECRED_POD_NAME") or socket.gethostname()
        events = RefusalEvents(api, metrics.pod_events, instance)
    issuer, keys, namespaces, pods = build_issuer(config, api, metrics, events)
    app = create_app(issuer, [namespaces, pods, keys], metrics, drain=drain)
    keys.start()
    namespaces.start()
    pods.start()
    log.info(
        "broker starting",
        extra={
            "fields": {
                "host": shown_address(args.host),
                "port": args.port,
                "audience": config.broker_audience,
                "shutdown_delay_seconds": drain.delay,
            }
        },
    )
    try:
        return serve_tls(app, args.host, args.port, tls.server_context, drain)
    finally:
        if events is not None:
            events.stop()
        pods.stop()
        namespaces.stop()
        keys.stop()
