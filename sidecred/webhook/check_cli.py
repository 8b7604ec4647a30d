"""`sidecred check -f FILE`: the admission decision for every pod in a file, offline.

A file (or `-` for stdin) holds one or more YAML documents: Pods, workloads
with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
CronJob), `List`s of them, Namespaces (their policy annotations are used for
the pods in them) and anything else, which is skipped. For each pod (template)
it builds the CREATE AdmissionRequest the API server would send, runs the
mutating decision and then the validating one on the patched pod, and prints
one decision line, its warnings, the role each container reaches (`none` for a
container without credentials) and a summary of the patch; then the patched
pods as YAML unless `--quiet`. Exit 0 all allowed, 1 any denied, 2 usage or
file error. A closed pipe (`| head`) ends it quietly.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from sidecred.jsonlog import add_log_level_argument
from sidecred.kube.sidecar_health import roles_by_container
from sidecred.pods.settings import Settings, add_config_arguments, config_from_args
from sidecred.serving.cli import configure_logging
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
POD_KINDS = ("Pod", *TEMPLATE_PATHS)


class UsageError(Exception):
    """A problem with the command line or its files; exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred check",
        description="Print the admission decision for every pod (template) in YAML files, offline.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        "--pod",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML with Pods, workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, "
        "CronJob), Lists and Namespaces; '-' reads stdin; may be repeated",
    )
    parser.add_argument(
        "--namespace",
        dest="namespace_files",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML with Namespaces holding the role policy annotations; may be repeated",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print the decision lines only, no patched pods"
    )
    add_log_level_argument(parser)
    add_config_arguments(parser)
    return parser


def load_documents(path: str, what: str) -> list[Any]:
    """The non-empty YAML documents in `path` ('-' is stdin)."""
    try:
        if path == "-":
            return [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
        with open(path, encoding="utf-8") as handle:
            return [d for d in yaml.safe_load_all(handle) if d is not None]
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path!r}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} file {path!r} is not valid YAML: {exc}") from None


def load_yaml_object(path: str, what: str) -> dict[str, Any]:
    """The one YAML object in `path`."""
    documents = load_documents(path, what)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise UsageError(f"{what} file {path!r} must hold exactly one YAML object")
    return documents[0]


def iter_objects(documents: Iterable[Any], path: str) -> Iterator[dict[str, Any]]:
    """Every object in `documents`, with the items of `kind: List` in their place."""
    for document in documents:
        if not isinstance(document, dict):
            raise UsageError(f"{path!r} holds a document that is not a YAML object")
        if document.get("kind") == "List" or str(document.get("kind", "")).endswith("List"):
            yield from iter_objects(document.get("items") or [], path)
        else:
            yield document


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
        f"{path!r} holds kind {kind!r}; expected a Pod or one of {', '.join(POD_KINDS)}"
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
        lines.append(f"{op['op']} {op['path']}{detail}")
    return lines


@dataclass
class Inputs:
    """What the files hold: pods to check (with the object each came from) and namespaces."""

    pods: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (label, pod)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)


def object_label(obj: dict[str, Any], index: int) -> str:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name") or metadata.get("generateName") or f"#{index}"
    return f"{obj.get('kind')}/{name}"


def read_inputs(files: list[str], namespace_files: list[str]) -> Inputs:
    inputs = Inputs()
    for path in namespace_files:
        for obj in iter_objects(load_documents(path, "namespace"), path):
            if obj.get("kind", "Namespace") != "Namespace":
                raise UsageError(f"namespace file {path!r} holds kind {obj.get('kind')!r}")
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                raise UsageError(f"a Namespace in {path!r} has no metadata.name")
            inputs.namespaces[name] = obj
    for path in files:
        for index, obj in enumerate(iter_objects(load_documents(path, "pod"), path), start=1):
            kind = obj.get("kind")
            if kind in POD_KINDS:
                inputs.pods.append((object_label(obj, index), pod_from_object(obj, path)))
            elif kind == "Namespace" and (obj.get("metadata") or {}).get("name"):
                inputs.namespaces.setdefault(obj["metadata"]["name"], obj)
    if not inputs.pods:
        raise UsageError(f"no Pod or workload with a pod template in {', '.join(map(repr, files))}")
    return inputs


@dataclass
class Outcome:
    """One pod's result: the decision line and the lines under it."""

    allowed: bool
    line: str
    details: list[str]
    patched: dict[str, Any] | None


def namespace_for(pod: dict[str, Any], namespaces: dict[str, dict[str, Any]]) -> str:
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if metadata.get("namespace"):
        return str(metadata["namespace"])
    return next(iter(namespaces)) if len(namespaces) == 1 else "default"


def check_pod(
    label: str,
    pod: dict[str, Any],
    namespaces: dict[str, dict[str, Any]],
    config: Settings,
    *,
    missing: str | None = None,
) -> Outcome:
    """Mutate, then validate the patched pod, as the API server's two webhook calls would.

    `missing` says why the pod's namespace is not in `namespaces` when the caller knows
    (`kubectl sidecred check` reads them from the cluster).
    """
    # Whoever runs the check holds the namespaces (the files, or read with their own
    # credentials), so denials show the policy's value.
    config = dataclasses.replace(config, explain_denials=True)
    namespace = namespace_for(pod, namespaces)
    namespace_obj = namespaces.get(namespace)
    if namespace_obj is not None:
        namespace_error = ""
    elif missing is not None:
        namespace_error = missing
    elif namespaces:
        namespace_error = f"no Namespace {namespace!r} in the given files"
    else:
        namespace_error = "no --namespace file was given"
    subject = f"{label} in {namespace}"
    request = build_request(pod, namespace)
    decision = decide_mutation(request, namespace_obj, config, namespace_error=namespace_error)
    if not decision.allowed:
        return denied_outcome(subject, decision, "mutation")
    patched = apply_patch(pod, decision.patch or [])
    validation = decide_validation(
        dict(request, object=patched), namespace_obj, config, namespace_error=namespace_error
    )
    if not validation.allowed:
        return denied_outcome(subject, validation, "validation", decision.warnings)
    warnings = list(dict.fromkeys([*decision.warnings, *validation.warnings]))
    patch = decision.patch or []
    details = [f"warning: {warning}" for warning in warnings]
    if roles := roles_by_container(patched):
        shown = ", ".join(f"{name}={arn or 'none'}" for name, arn in roles.items())
        details.append(f"roles: {shown}")
    details += [f"patch: {line}" for line in summarise_patch(patch)]
    return Outcome(True, f"{subject}: allowed ({decision.reason})", details, patched)


def denied_outcome(
    subject: str, decision: Decision, stage: str, earlier_warnings: tuple[str, ...] = ()
) -> Outcome:
    line = f"{subject}: denied by {stage} (code {decision.code}, {decision.reason}): {decision.message}"
    warnings = dict.fromkeys([*earlier_warnings, *decision.warnings])
    return Outcome(False, line, [f"warning: {warning}" for warning in warnings], None)


def print_outcomes(outcomes: list[Outcome], quiet: bool) -> None:
    for outcome in outcomes:
        print(outcome.line)
        if not quiet:
            for detail in outcome.details:
                print(f"  {detail}")
    if quiet:
        return
    for outcome in outcomes:
        if outcome.patched is not None:
            print("---")
            print(yaml.safe_dump(outcome.patched, sort_keys=False), end="")


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return 0 if exc.code == 0 else 2
    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
        inputs = read_inputs(args.files, args.namespace_files)
    except (UsageError, ValueError) as exc:
        print(f"sidecred check: {exc}", file=sys.stderr)
        return 2
    outcomes = [check_pod(label, pod, inputs.namespaces, config) for label, pod in inputs.pods]
    status = 0 if all(outcome.allowed for outcome in outcomes) else 1
    try:
        print_outcomes(outcomes, args.quiet)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`); Python would complain again when it
        # flushes stdout on exit, so point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status
