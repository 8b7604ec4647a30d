"""`sidecred check`: the admission decision for a pod file, offline.

Builds the CREATE AdmissionRequest the API server would send, runs the
mutating decision and then the validating one on the patched pod, and prints
the decision, its one readable message, warnings, a summary of the patch and
the patched pod as YAML. Exit 0 allowed, 1 denied, 2 usage or file error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from sidecred.webhook.config import add_config_arguments, config_from_args
from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request

# Workloads whose pod template `check` accepts in place of a Pod.
TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class UsageError(Exception):
    """A problem with the command line or its files; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred check",
        description="Print the admission decision and the patched pod for a pod file, offline.",
    )
    parser.add_argument("--pod", required=True, help="Pod YAML (or a workload with a pod template)")
    parser.add_argument("--namespace", help="Namespace YAML holding the role policy annotations")
    add_config_arguments(parser)
    return parser


def load_yaml_object(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path!r}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} file {path!r} is not valid YAML: {exc}") from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise UsageError(f"{what} file {path!r} must hold exactly one YAML object")
    return documents[0]


def pod_from_object(obj: dict[str, Any], path: str) -> dict[str, Any]:
    """The Pod itself, or a Pod built from a workload's template as its controller would."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    if kind in TEMPLATE_PATHS:
        template: Any = obj
        for key in TEMPLATE_PATHS[kind]:
            template = template.get(key) if isinstance(template, dict) else None
        if not isinstance(template, dict):
            raise UsageError(f"{kind} in {path!r} has no pod template")
        metadata = dict(template.get("metadata") or {})
        name = (obj.get("metadata") or {}).get("name", "pod")
        metadata.setdefault("generateName", f"{name}-")
        if (obj.get("metadata") or {}).get("namespace"):
            metadata.setdefault("namespace", obj["metadata"]["namespace"])
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": template.get("spec") or {},
        }
    raise UsageError(
        f"{path!r} holds kind {kind!r}; expected a Pod or one of {', '.join(TEMPLATE_PATHS)}"
    )


def build_request(pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The CREATE AdmissionRequest the API server would send for `pod` (as a dry run)."""
    return dict(pod_request(pod, namespace=namespace, dry_run=True))


def summarise_patch(patch: list[dict[str, Any]]) -> list[str]:
    lines = []
    for op in patch:
        value = op.get("value")
        if isinstance(value, dict) and "name" in value:
            detail = f" ({value['name']})"
        elif isinstance(value, list):
            names = [v.get("name") for v in value if isinstance(v, dict) and "name" in v]
            detail = f" ({', '.join(map(str, names))})" if names else ""
        else:
            detail = ""
        lines.append(f"  {op['op']} {op['path']}{detail}")
    return lines


def print_decision(decision: Decision, stage: str) -> None:
    if decision.allowed:
        print(f"decision: allowed ({decision.reason})")
    else:
        print(f"decision: denied by {stage} (code {decision.code}, {decision.reason})")
        print(decision.message)
    for warning in decision.warnings:
        print(f"warning: {warning}")


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return 0 if exc.code == 0 else 2
    try:
        config = config_from_args(args)
        pod = pod_from_object(load_yaml_object(args.pod, "pod"), args.pod)
        namespace_obj = load_yaml_object(args.namespace, "namespace") if args.namespace else None
    except (UsageError, ValueError) as exc:
        print(f"sidecred check: {exc}", file=sys.stderr)
        return 2

    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    ns_metadata = (namespace_obj or {}).get("metadata") or {}
    namespace_name = metadata.get("namespace") or ns_metadata.get("name") or "default"
    if namespace_obj is not None and ns_metadata.get("name") not in (None, namespace_name):
        print(
            f"sidecred check: the pod is in namespace {namespace_name!r} but {args.namespace!r} "
            f"describes {ns_metadata.get('name')!r}",
            file=sys.stderr,
        )
        return 2
    namespace_error = "" if namespace_obj is not None else "no --namespace file was given"

    request = build_request(pod, namespace_name)
    decision = decide_mutation(request, namespace_obj, config, namespace_error=namespace_error)
    if not decision.allowed:
        print_decision(decision, "mutation")
        return 1
    patched = apply_patch(pod, decision.patch or [])
    validation = decide_validation(
        dict(request, object=patched), namespace_obj, config, namespace_error=namespace_error
    )
    if not validation.allowed:
        print_decision(decision, "mutation")
        print_decision(validation, "validation")
        return 1
    print_decision(decision, "mutation")
    for warning in validation.warnings:
        if warning not in decision.warnings:
            print(f"warning: {warning}")
    patch = decision.patch or []
    print(f"patch: {len(patch)} operation{'s' if len(patch) != 1 else ''}")
    for line in summarise_patch(patch):
        print(line)
    print("---")
    print(yaml.safe_dump(patched, sort_keys=False), end="")
    return 0
