"""`kubectl sidecred`: the kubectl plugin (console script `kubectl-sidecred`).

    kubectl sidecred check -f FILE [-n NS]                 admission decisions against the live policies
    kubectl sidecred status [POD | -A] [-n NS] [-l SEL]    sidecars' readiness, role, last error, expiry
    kubectl sidecred audit [-n NS | -A] [-l SEL]           revoked roles and sidecars without credentials
    kubectl sidecred --version

Flags mean what they mean to kubectl: `--kubeconfig`, `--context`, `-n/--namespace`
(default: the context's namespace), `-A/--all-namespaces`, `-l/--selector`,
`--request-timeout` (`0`, `30s`, `1m`, ...), `-o table|json|yaml`. `check` and `audit`
judge with the settings the cluster runs (the chart's ConfigMap, found by `--release` and
`--release-namespace`); webhook flags given here win over them.
Exit status 0 on success, 1 when the cluster says no (pod not found, API error), `check`
finds a pod denied or `audit` finds a problem, 2 on a usage or kubeconfig error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes import config as kube_config

from sidecred import __version__
from sidecred.jsonlog import add_log_level_argument
from sidecred.ops.audit import COLUMNS as AUDIT_COLUMNS
from sidecred.ops.audit import collect_findings, finding_rows
from sidecred.ops.check import check_live, warnings_of
from sidecred.ops.deployed import (
    DEFAULT_RELEASE,
    DEFAULT_RELEASE_NAMESPACE,
    Deployed,
    plugin_settings,
    read_deployed,
)
from sidecred.ops.output import OUTPUT_FORMATS, render
from sidecred.ops.status import COLUMNS as STATUS_COLUMNS
from sidecred.ops.status import collect_status, collect_statuses
from sidecred.pods.settings import Settings, add_config_arguments
from sidecred.serving.cli import configure_logging
from sidecred.webhook.check_cli import UsageError as FileError

PROG = "kubectl sidecred"


class UsageError(Exception):
    """Bad flags or an unusable kubeconfig; exit status 2."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def request_timeout(text: str) -> float | None:
    """kubectl's --request-timeout: a number of seconds or a duration (`1m30s`); 0 is none."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    elif value and _DURATION_PART.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: a number of seconds, or such as 30s, 1m, 1h"
        )
    return seconds or None


def timed_api_client(configuration: client.Configuration, timeout: float | None) -> Any:
    """An API client whose requests without a timeout of their own get --request-timeout."""
    api_client = client.ApiClient(configuration)
    plain_request = api_client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None and timeout:
            kwargs["_request_timeout"] = timeout
        return plain_request(*args, **kwargs)

    api_client.request = request
    return api_client


def load_api(
    kubeconfig: str | None, context: str | None, timeout: float | None = None
) -> tuple[client.CoreV1Api, str]:
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
    if timeout:
        configuration.retries = 0  # give up after the timeout, as kubectl does, not 4 of them
    return client.CoreV1Api(timed_api_client(configuration, timeout)), namespace


def common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="path to the kubeconfig file")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    common.add_argument(
        "--request-timeout", type=request_timeout, default=None, metavar="DURATION",
        help="give up on a single API request after this long (0: never; default 0)",
    )  # fmt: skip
    add_log_level_argument(common)
    return common


def settings_flags() -> argparse.ArgumentParser:
    """Where the deployed settings are; the webhook's options, which win over them."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--release", default=DEFAULT_RELEASE,
        help=f"the Helm release whose settings ConfigMap to read (default {DEFAULT_RELEASE})",
    )  # fmt: skip
    flags.add_argument(
        "--release-namespace", default=DEFAULT_RELEASE_NAMESPACE,
        help=f"its namespace (default {DEFAULT_RELEASE_NAMESPACE})",
    )  # fmt: skip
    add_config_arguments(flags)
    return flags


def pod_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-A", "--all-namespaces", action="store_true")
    flags.add_argument(
        "-l", "--selector", metavar="SELECTOR",
        help="only injected pods with these labels (kubectl's syntax, e.g. app=web)",
    )  # fmt: skip
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="sidecred's view of a cluster.")
    parser.add_argument("--version", action="version", version=f"kubectl-sidecred {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, settings, pods = common_flags(), settings_flags(), pod_flags()
    check = commands.add_parser(
        "check", parents=[common, settings],
        help="admission decisions for pods and workloads in files",
    )  # fmt: skip
    check.add_argument(
        "-f", "--filename", dest="files", action="append", required=True, metavar="FILE",
        help="YAML with Pods and workloads ('-' reads stdin); may be repeated",
    )  # fmt: skip
    status = commands.add_parser(
        "status", parents=[common, pods],
        help="sidecars' readiness, role, last error, expiry: one pod, or all injected pods",
    )  # fmt: skip
    status.add_argument("pod", metavar="POD", nargs="?")
    commands.add_parser(
        "audit", parents=[common, pods, settings],
        help="injected pods whose role is no longer permitted, and sidecars without credentials",
    )  # fmt: skip
    return parser


def deployed_settings(args: argparse.Namespace, api: client.CoreV1Api) -> Settings:
    """The settings to judge with; says on stderr where they came from when not the cluster."""
    deployed: Deployed = read_deployed(api, args.release, args.release_namespace)
    if deployed.problem:
        print(
            f"{PROG}: no deployed settings ({deployed.where}: {deployed.problem}); using the "
            "flags given, SIDECRED_* env and defaults (--release, --release-namespace find it)",
            file=sys.stderr,
        )
    return plugin_settings(args, deployed)


def run_check(args: argparse.Namespace, api: client.CoreV1Api, namespace: str) -> int:
    config = deployed_settings(args, api)
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
    if args.pod is not None:
        if args.all_namespaces or args.selector:
            raise UsageError("status POD takes neither -A nor -l")
        rows = [collect_status(api, namespace, args.pod)]
    else:
        rows = collect_statuses(api, None if args.all_namespaces else namespace, args.selector)
        if not rows and args.output == "table":
            print(f"No sidecred pods found in {_where(args, namespace)}.", file=sys.stderr)
            return 0
    columns = STATUS_COLUMNS if args.all_namespaces else STATUS_COLUMNS[1:]
    print(render("SidecarStatus", columns, rows, args.output), end="")
    return 0


def _where(args: argparse.Namespace, namespace: str) -> str:
    return "any namespace" if args.all_namespaces else f"namespace {namespace}"


def run_audit(args: argparse.Namespace, api: client.CoreV1Api, namespace: str) -> int:
    """Exit 1 when anything is found, so scripts and CI can gate on it."""
    config = deployed_settings(args, api)
    scope = None if args.all_namespaces else namespace
    findings = collect_findings(api, scope, config, args.selector)
    columns = AUDIT_COLUMNS if args.all_namespaces else AUDIT_COLUMNS[1:]
    if not findings and args.output == "table":
        print(f"No problems found in {_where(args, namespace)}.", file=sys.stderr)
        return 0
    print(render("AuditFinding", columns, finding_rows(findings), args.output), end="")
    return 1 if findings else 0


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
        api, context_namespace = load_api(args.kubeconfig, args.context, args.request_timeout)
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
        if isinstance(getattr(exc, "reason", exc), urllib3.exceptions.TimeoutError):
            print(f"{PROG}: no answer from the Kubernetes API within --request-timeout", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{PROG}: the Kubernetes API is unreachable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
