"""The pod-event flags of `sidecred webhook` and `sidecred broker`, checked and read.

`--events/--no-events` (env SIDECRED_EVENTS, default on), `--lease-name` (env
SIDECRED_LEASE_NAME, default `sidecred-events`), `--events-interval` (env
SIDECRED_EVENTS_INTERVAL, seconds between passes). The Lease lives in the
webhook's own namespace: SIDECRED_POD_NAMESPACE (the chart sets it from the
downward API), else the service account's namespace file. Outside a cluster
with neither, the reporter does not run (it says so), because without a Lease
two replicas could double every event.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from sidecred.kube.events import SCAN_INTERVAL_SECONDS

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "sidecred-events"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_FALSE = ("0", "false", "no", "off")


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pod events")
    group.add_argument(
        "--events",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="post CredentialsUnavailable/Available events on pods (default on) [env SIDECRED_EVENTS]",
    )
    group.add_argument(
        "--lease-name",
        metavar="NAME",
        help=f"Lease electing the replica that reports events (default {DEFAULT_LEASE_NAME}) "
        "[env SIDECRED_LEASE_NAME]",
    )
    group.add_argument(
        "--events-interval",
        metavar="SECONDS",
        help=f"seconds between passes over the injected pods (default {SCAN_INTERVAL_SECONDS:g}) "
        "[env SIDECRED_EVENTS_INTERVAL]",
    )


def lease_namespace(env: Mapping[str, str], namespace_file: Path = NAMESPACE_FILE) -> str | None:
    if env.get("SIDECRED_POD_NAMESPACE"):
        return env["SIDECRED_POD_NAMESPACE"]
    try:
        return namespace_file.read_text().strip() or None
    except OSError:
        return None


def event_settings(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> tuple[bool, str, float]:
    """(enabled, lease name, interval) from flags, then env, then defaults; ValueError if bad."""
    env = os.environ if env is None else env
    enabled = args.events
    if enabled is None:
        enabled = env.get("SIDECRED_EVENTS", "true").strip().lower() not in _FALSE
    name = args.lease_name or env.get("SIDECRED_LEASE_NAME") or DEFAULT_LEASE_NAME
    if not _DNS_NAME.fullmatch(name):
        raise ValueError(f"sidecred webhook: --lease-name={name!r} is not a DNS subdomain name")
    raw = args.events_interval or env.get("SIDECRED_EVENTS_INTERVAL") or str(SCAN_INTERVAL_SECONDS)
    try:
        interval = float(raw)
    except ValueError:
        interval = -1.0
    if not 0.1 <= interval <= 300:
        raise ValueError(f"sidecred webhook: --events-interval={raw!r} is not 0.1-300 seconds")
    return bool(enabled), name, interval
