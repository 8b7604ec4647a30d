"""`kubectl sidecred check -f FILE`: `sidecred check`'s decisions against the live policies.

Every Pod and workload pod template in the files (several YAML documents, `List`s
too) goes through the mutating and then the validating decision, as the API
server's two webhook calls would, with its namespace's policy read from the
cluster. One decision line per pod (template), then its warnings. Exit 0 when
all are allowed, 1 when any is denied, 2 on a usage error (as `sidecred check`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client

from sidecred.webhook.check_cli import TEMPLATE_PATHS, UsageError, build_request, pod_from_object
from sidecred.webhook.config import WebhookConfig
from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch

POD_KINDS = ("Pod", *TEMPLATE_PATHS)


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    line: str
    warnings: tuple[str, ...] = ()


def load_objects(path: str) -> Iterator[dict[str, Any]]:
    """The objects in a YAML file ('-' is stdin), with the items of a List in its place."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path!r} is not valid YAML: {exc}") from None
    yield from _flatten(documents, path)


def _flatten(documents: Iterable[Any], path: str) -> Iterator[dict[str, Any]]:
    for document in documents:
        if not isinstance(document, dict):
            raise UsageError(f"{path!r} holds a document that is not a YAML object")
        if str(document.get("kind", "")).endswith("List"):
            yield from _flatten(document.get("items") or [], path)
        else:
            yield document


def read_pods(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, pod) for every Pod or pod template in the files; other kinds are skipped."""
    pods = []
    for path in paths:
        for obj in load_objects(path):
            if obj.get("kind") in POD_KINDS:
                name = (obj.get("metadata") or {}).get("name") or "(unnamed)"
                pods.append((f"{obj['kind']}/{name}", pod_from_object(obj, path)))
    if not pods:
        raise UsageError(f"no Pod or workload with a pod template in {', '.join(paths)}")
    return pods


def read_namespace(api: client.CoreV1Api, name: str) -> tuple[dict[str, Any] | None, str]:
    """The live Namespace, or None and why (as the webhook's lookup says it)."""
    try:
        return json.loads(api.read_namespace(name, _preload_content=False).data), ""
    except client.ApiException as exc:
        if exc.status == 404:
            return None, f'namespace "{name}" not found'
        return None, f"Kubernetes API error reading namespace {name!r}: HTTP {exc.status}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return None, f"Kubernetes API unreachable: {type(exc).__name__}"


def decide_pod(
    pod: dict[str, Any], namespace: str, found: tuple[dict | None, str], config: WebhookConfig
) -> tuple[Decision, str]:
    """The decision that counts (mutation, or validation of the patched pod) and its stage."""
    namespace_obj, error = found
    request = build_request(pod, namespace)
    mutation = decide_mutation(request, namespace_obj, config, namespace_error=error)
    if not mutation.allowed:
        return mutation, "mutation"
    patched = apply_patch(pod, mutation.patch or [])
    validation = decide_validation(
        dict(request, object=patched), namespace_obj, config, namespace_error=error
    )
    if not validation.allowed:
        return replace(validation, warnings=mutation.warnings + validation.warnings), "validation"
    warnings = tuple(dict.fromkeys(mutation.warnings + validation.warnings))
    return Decision(True, patch=mutation.patch, warnings=warnings, reason=mutation.reason), ""


def check_live(
    pods: list[tuple[str, dict[str, Any]]],
    api: client.CoreV1Api,
    default_namespace: str,
    config: WebhookConfig,
) -> list[Outcome]:
    namespaces: dict[str, tuple[dict | None, str]] = {}
    outcomes = []
    for label, pod in pods:
        namespace = (pod.get("metadata") or {}).get("namespace") or default_namespace
        if namespace not in namespaces:
            namespaces[namespace] = read_namespace(api, namespace)
        decision, stage = decide_pod(pod, namespace, namespaces[namespace], config)
        subject = f"{label} in {namespace}"
        if decision.allowed:
            line = f"{subject}: allowed ({decision.reason})"
        else:
            line = f"{subject}: denied by {stage} (code {decision.code}, {decision.reason}): {decision.message}"  # fmt: skip
        outcomes.append(Outcome(decision.allowed, line, decision.warnings))
    return outcomes
