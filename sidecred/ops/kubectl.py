"""`kubectl sidecred`: the kubectl plugin (console script `kubectl-sidecred`).

    kubectl sidecred check -f FILE [-n NS]       admission decisions against the live policies
    kubectl sidecred status POD [-n NS]          the sidecar's readiness, role, last error, expiry
    kubectl sidecred audit [-n NS | -A]          revoked roles and sidecars without credentials

Flags mean what they mean to kubectl: `--kubeconfig`, `--context`, `-n/--namespace`
(default: the context's namespace), `-A/--all-namespaces`, `-o table|json|yaml`.
Exit status 0 on success, 1 when the cluster says no (pod not found, API error)
or `check` finds a pod denied, 2 on a usage or kubeconfig error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import urllib3
from kubernetes import client
from kubernetes import config as kube_config

from sidecred.jsonlog import add_log_level_argument, configure_logging
from sidecred.ops.audit import COLUMNS as AUDIT_COLUMNS
from sidecred.ops.audit import collect_findings, finding_rows
from sidecred.ops.check import check_live, warnings_of
from sidecred.ops.output import OUTPUT_FORMATS, render
from sidecred.ops.status import COLUMNS as STATUS_COLUMNS
from sidecred.ops.status import collect_status
from sidecred.pods.settings import add_config_arguments, config_from_args
from sidecred.webhook.check_cli import UsageError as FileError

PROG = "kubectl sidecred"


class UsageError(Exception):
    """Bad flags or an unusable kubeconfig; exit status 2."""


def load_api(kubeconfig: str | None, context: str | None) -> tuple[client.CoreV1Api, str]:
    """The API client and the context's namespace, as kubectl reads the kubeconfig."""
    configuration = client.Configuration()
    try:
        kube_config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        contexts, active = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    except (kube_config.ConfigException, OSError, ValueError) as exc:
        raise UsageError(f"cannot load the kubeconfig: {exc}") from None
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    return client.CoreV1Api(client.ApiClient(configuration)), namespace


def common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="path to the kubeconfig file")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    add_log_level_argument(common)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="sidecred's view of a cluster.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_flags()
    check = commands.add_parser(
        "check", parents=[common], help="admission decisions for pods and workloads in files"
    )
    check.add_argument(
        "-f", "--filename", dest="files", action="append", required=True, metavar="FILE",
        help="YAML with Pods and workloads ('-' reads stdin); may be repeated",
    )  # fmt: skip
    add_config_arguments(check)
    status = commands.add_parser(
        "status", parents=[common], help="a pod's sidecar: readiness, role, last error, expiry"
    )
    status.add_argument("pod", metavar="POD")
    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="injected pods whose role is no longer permitted, and sidecars without credentials",
    )
    audit.add_argument("-A", "--all-namespaces", action="store_true")
    add_config_arguments(audit)
    return parser


def run_check(args: argparse.Namespace, api: client.CoreV1Api, namespace: str) -> int:
    config = config_from_args(args)
    outcomes = check_live(args.files, api, namespace, config)
    if args.output == "table":
        for outcome in outcomes:
            print(outcome.line)
            for warning in warnings_of(outcome):
                print(f"  warning: {warning}")
    else:
        rows = [{"allowed": o.allowed, "decision": o.line, "warnings": warnings_of(o)} for o in outcomes]  # fmt: skip
        print(render("CheckDecision", (), rows, args.output), end="")
    return 0 if all(outcome.allowed for outcome in outcomes) else 1


def run_status(args: argparse.Namespace, api: client.CoreV1Api, namespace: str) -> int:
    row = collect_status(api, namespace, args.pod)
    print(render("SidecarStatus", STATUS_COLUMNS, [row], args.output), end="")
    return 0


def run_audit(args: argparse.Namespace, api: client.CoreV1Api, namespace: str) -> int:
    config = config_from_args(args)
    findings = collect_findings(api, None if args.all_namespaces else namespace, config)
    columns = AUDIT_COLUMNS if args.all_namespaces else AUDIT_COLUMNS[1:]
    if not findings and args.output == "table":
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        print(f"No problems found in {where}.", file=sys.stderr)
        return 0
    print(render("AuditFinding", columns, finding_rows(findings), args.output), end="")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, client.CoreV1Api, str], int]] = {
    "check": run_check,
    "status": run_status,
    "audit": run_audit,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or the help)
        return 0 if exc.code == 0 else 2
    configure_logging(args.log_level)
    try:
        api, context_namespace = load_api(args.kubeconfig, args.context)
        return COMMANDS[args.command](args, api, args.namespace or context_namespace)
    except (UsageError, FileError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    except client.ApiException as exc:
        print(f"Error from server ({exc.reason}): HTTP {exc.status}", file=sys.stderr)
        return 1
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        print(f"{PROG}: the Kubernetes API is unreachable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
