"""Building the webhook's pod-event reporter from its flags (sidecred.kube.event_flags)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import uuid
from collections.abc import Mapping

from kubernetes import client
from prometheus_client import CollectorRegistry

from sidecred.kube.event_flags import event_settings, lease_namespace
from sidecred.kube.watch import PodCache
from sidecred.webhook.event_reporter import EventReporter, ReporterMetrics
from sidecred.webhook.leader import LeaseElector

log = logging.getLogger(__name__)


def build_event_reporter(
    args: argparse.Namespace,
    api: client.CoreV1Api,
    registry: CollectorRegistry,
    env: Mapping[str, str] | None = None,
) -> EventReporter | None:
    """The reporter the flags ask for, or None (disabled, or no namespace for its Lease)."""
    env = os.environ if env is None else env
    enabled, lease_name, interval = event_settings(args, env)
    if not enabled:
        return None
    namespace = lease_namespace(env)
    if namespace is None:
        log.warning("pod events are off: no namespace for the Lease (set SIDECRED_POD_NAMESPACE)")
        return None
    identity = f"{env.get('SIDECRED_POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    elector = LeaseElector(
        client.CoordinationV1Api(api.api_client), namespace, lease_name, identity
    )
    return EventReporter(
        api,
        elector,
        PodCache(api),
        ReporterMetrics(registry),
        scan_interval=interval,
    )
