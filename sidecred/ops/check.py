"""`kubectl sidecred check -f FILE`: `sidecred check`'s decisions against the live policies.

The files are read as `sidecred check` reads them (Pods, workload pod templates,
Lists; '-' is stdin) and each pod goes through the same mutating-then-validating
decision (`check_cli.check_pod`), with its namespace's policy read from the cluster;
Namespaces in the files are ignored. A pod without a namespace takes the context's.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes import client

from sidecred.pods.settings import Settings
from sidecred.webhook.check_cli import Outcome, check_pod, read_inputs


def read_namespace(api: client.CoreV1Api, name: str) -> tuple[dict[str, Any] | None, str]:
    """The live Namespace, or None and why."""
    try:
        return json.loads(api.read_namespace(name, _preload_content=False).data), ""
    except client.ApiException as exc:
        if exc.status == 404:
            return None, f'namespace "{name}" not found'
        return None, f"Kubernetes API error reading namespace {name!r}: HTTP {exc.status}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return None, f"Kubernetes API unreachable: {type(exc).__name__}"


def check_live(
    files: list[str], api: client.CoreV1Api, default_namespace: str, config: Settings
) -> list[Outcome]:
    """One Outcome per pod (template) in `files`, each namespace read once."""
    found: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    outcomes = []
    for label, pod in read_inputs(files, []).pods:
        metadata = dict(pod.get("metadata") or {})
        namespace = metadata.setdefault("namespace", default_namespace)
        if namespace not in found and namespace not in missing:
            obj, error = read_namespace(api, namespace)
            if obj is None:
                missing[namespace] = error
            else:
                found[namespace] = obj
        pod = {**pod, "metadata": metadata}
        outcomes.append(check_pod(label, pod, found, config, missing=missing.get(namespace)))
    return outcomes


def warnings_of(outcome: Outcome) -> list[str]:
    return [d.removeprefix("warning: ") for d in outcome.details if d.startswith("warning: ")]
