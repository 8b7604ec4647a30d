"""The settings sidecred runs with in a cluster, for `kubectl sidecred`.

The chart keeps every webhook option (`SIDECRED_*`) in one ConfigMap, which the webhook
and the broker read with `envFrom`; the plugin reads the same ConfigMap, so `check -f`
and `audit` judge with the cluster's base role ARN, annotation key and policy mode
without the webhook's flags repeated. Flags given to the plugin still win.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import urllib3
from kubernetes import client

from sidecred.pods.settings import Settings, config_from_args

CHART_NAME = "sidecred"
DEFAULT_RELEASE = "sidecred"
DEFAULT_RELEASE_NAMESPACE = "sidecred"
ENV_PREFIX = "SIDECRED_"


def configmap_name(release: str) -> str:
    """The chart's object name for a release (its `sidecred.fullname`)."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class Deployed:
    """What was read: the ConfigMap's SIDECRED_* data, or why there is none."""

    env: dict[str, str]
    where: str  # "configmap sidecred/sidecred"
    problem: str = ""


def read_deployed(api: client.CoreV1Api, release: str, namespace: str) -> Deployed:
    name = configmap_name(release)
    where = f"configmap {namespace}/{name}"
    try:
        response = api.read_namespaced_config_map(name, namespace, _preload_content=False)
        data = json.loads(response.data).get("data") or {}
    except client.ApiException as exc:
        reason = "not found" if exc.status == 404 else f"HTTP {exc.status}"
        return Deployed({}, where, reason)
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        return Deployed({}, where, f"unreadable: {type(exc).__name__}")
    env = {k: str(v) for k, v in data.items() if k.startswith(ENV_PREFIX)}
    return Deployed(env, where)


def plugin_settings(args: argparse.Namespace, deployed: Deployed) -> Settings:
    """Flags first, then the cluster's ConfigMap, then this shell's SIDECRED_* env, then
    the defaults. The broker's CA file is a path inside the webhook's pod: not read here
    (no decision depends on its text)."""
    local: Mapping[str, str] = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    return config_from_args(args, {**local, **deployed.env}, read_broker_ca=False)
