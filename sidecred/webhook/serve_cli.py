"""`sidecred webhook`: the admission webhook over TLS (FastAPI on uvicorn, one process)."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Mapping

from sidecred.int_range import parse_int_in_range
from sidecred.kube.client import KubeConfigUnavailable, load_core_api
from sidecred.kube.event_flags import add_event_arguments
from sidecred.kube.watch import NamespaceCache
from sidecred.pods.settings import add_config_arguments, config_from_args
from sidecred.serving.body_budget import DEFAULT_BUDGET_MIB
from sidecred.serving.cli import add_server_arguments, configure_logging, shutdown_delay
from sidecred.serving.drain import Drain
from sidecred.serving.listen import shown_address
from sidecred.serving.run import serve_tls
from sidecred.serving.tls import DEFAULT_CHECK_INTERVAL, ReloadingServerContext
from sidecred.webhook.app import create_app
from sidecred.webhook.event_options import build_event_reporter
from sidecred.webhook.metrics import WebhookMetrics

log = logging.getLogger("sidecred.webhook")

BODY_BUDGET_ENV = "SIDECRED_REQUEST_BODY_BUDGET_MIB"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred webhook",
        description="Serve the sidecred admission webhook (/mutate, /validate) over TLS.",
    )
    add_server_arguments(parser, default_port=8443)
    add_config_arguments(parser)
    add_event_arguments(parser)
    budgets = parser.add_argument_group("budgets")
    budgets.add_argument(
        "--request-body-budget-mib",
        metavar="MIB",
        help="MiB of request bodies held at once across all connections; past it a "
        f"request waits briefly, then gets 503 (default {DEFAULT_BUDGET_MIB}) "
        f"[env {BODY_BUDGET_ENV}]",
    )
    return parser


def body_budget_bytes(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """--request-body-budget-mib, else its env, else the default; ValueError if invalid.

    At least 4 MiB, so one review of the largest size (3 MiB) always fits.
    """
    raw = args.request_body_budget_mib or env.get(BODY_BUDGET_ENV) or str(DEFAULT_BUDGET_MIB)
    mib = parse_int_in_range(
        "sidecred webhook: --request-body-budget-mib", raw, 4, 4096, unit="MiB"
    )
    return mib * 1024 * 1024


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
        bodies = body_budget_bytes(args, os.environ)
        drain = Drain(shutdown_delay(args))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        tls = ReloadingServerContext(
            args.tls_cert, args.tls_key, check_interval=DEFAULT_CHECK_INTERVAL
        )
    except (OSError, ssl.SSLError) as exc:
        print(
            f"sidecred webhook: cannot load --tls-cert {args.tls_cert} / --tls-key {args.tls_key}: {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        api = load_core_api(args.kubeconfig)
    except KubeConfigUnavailable as exc:
        print(f"sidecred webhook: {exc}", file=sys.stderr)
        return 2

    # urllib3 logs every retry of an unreachable API server; the cache logs the outcome.
    # (Set after the client's Configuration, which resets this logger's level.)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    metrics = WebhookMetrics()
    metrics.watch_certificate(lambda: tls.not_after)
    namespaces = NamespaceCache(api, record_api_call=metrics.record_api_call)
    try:
        reporter = build_event_reporter(args, api, metrics.registry)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    app = create_app(config, namespaces, metrics, body_budget_bytes=bodies, drain=drain)
    if reporter is not None:
        # uvicorn re-raises SIGTERM once it has shut down, so `finally` would not run:
        # release the Lease during the app's shutdown instead.
        app.router.on_shutdown.append(reporter.stop)
    namespaces.start()
    if reporter is not None:
        reporter.start()
    log.info(
        "webhook starting",
        extra={
            "fields": {
                "host": shown_address(args.host),
                "port": args.port,
                "shutdown_delay_seconds": drain.delay,
                "config": config.loggable(),
                "request_body_budget_bytes": bodies,
            }
        },
    )
    try:
        # Limits against abuse (serving.limits): any pod can reach the webhook.
        return serve_tls(app, args.host, args.port, tls.server_context, drain)
    finally:
        namespaces.stop()
