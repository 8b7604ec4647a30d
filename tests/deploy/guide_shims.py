"""The programs the operator's guides call, for running those guides without a cluster.

`python -m tests.deploy.guide_shims PROGRAM ARGS...` is what `helm`, `kubectl`, `aws`,
`skopeo` and `docker` are on the PATH of a guide run (tests/deploy/guide_shell.py):

- `helm install|upgrade NAME deploy/chart ...` merges the values as Helm does (`-f`,
  `--set-json`, `--set`, `--set-string`, `--set-file` in Helm's order;
  `--reset-then-reuse-values` over the release's last values) and renders the chart
  with Helm's own engine (helm-python), so a schema or template error fails the
  command as it would fail `helm`. `helm get values NAME -o yaml` prints the
  release's values; other verbs need an existing release.
- `kubectl create secret ...` runs the real kubectl with `--dry-run=client -o yaml`:
  piped to `kubectl apply -f -` as the guides write it, or stored as applied.
  `kubectl apply -f -` stores what it reads. Other kubectl verbs need a cluster.
- `aws`, `skopeo`, `docker` need the outside world.

Whatever cannot run here is logged, not faked: GUIDE_STATE/log.jsonl has one line per
call, and the test decides what each means. Applied objects and releases are kept in
GUIDE_STATE as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import yaml

from deploy import render

STATE = Path(os.environ.get("GUIDE_STATE", "."))
# The flags each helm verb the guides use may carry, and whether each takes a value.
_HELM_FLAGS = {
    "--namespace": True,
    "-n": True,
    "--create-namespace": False,
    "--set": True,
    "--set-string": True,
    "--set-file": True,
    "--set-json": True,
    "-f": True,
    "--values": True,
    "--reset-then-reuse-values": False,
    "--reuse-values": False,
    "-o": True,
}


def _log(program: str, argv: list[str], **fields: Any) -> None:
    entry = {"program": program, "argv": argv, "cwd": os.getcwd(), **fields}
    with (STATE / "log.jsonl").open("a") as log:
        log.write(json.dumps(entry) + "\n")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of two value maps: nested maps merge, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_helm(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    positional: list[str] = []
    flags: dict[str, list[str]] = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        name, eq, inline = arg.partition("=")
        if not arg.startswith("-"):
            positional.append(arg)
        elif name not in _HELM_FLAGS:
            raise SystemExit(f"guide helm: flag {arg!r} is not one this test knows; add it")
        elif _HELM_FLAGS[name]:
            flags.setdefault(name, []).append(inline if eq else rest.pop(0))
        else:
            flags.setdefault(name, []).append("true")
    return positional, flags


def _given_values(flags: dict[str, list[str]]) -> dict[str, Any]:
    """The values given on one command line, merged in Helm's order."""
    values: dict[str, Any] = {}
    for path in flags.get("-f", []) + flags.get("--values", []):
        values = _merge(values, helm_python.values_from_yaml(Path(path).read_text()))
    parsers = (
        ("--set-json", helm_python.parse_set_json),
        ("--set", helm_python.parse_set_string),
        ("--set-string", helm_python.parse_set_string_values),
        ("--set-file", helm_python.parse_set_file),
    )
    for flag, parse in parsers:
        for expression in flags.get(flag, []):
            values = _merge(values, parse(expression))
    return values


def _release_path(name: str) -> Path:
    return STATE / "releases" / f"{name}.json"


def _release(name: str) -> dict[str, Any]:
    path = _release_path(name)
    if not path.exists():
        raise SystemExit(f"Error: release: not found ({name})")
    return json.loads(path.read_text())


def helm(argv: list[str]) -> int:
    positional, flags = _parse_helm(argv)
    verb, *args = positional
    namespace = (flags.get("--namespace") or flags.get("-n") or [None])[-1]
    _log("helm", argv, verb=verb, namespace=namespace)
    if verb == "get" and args[:1] == ["values"]:
        print(yaml.safe_dump(_release(args[1])["values"], sort_keys=False), end="")
        return 0
    if verb not in ("install", "upgrade"):
        _release(args[0])  # test, history, rollback, uninstall: the release must exist
        if verb == "uninstall":
            _release_path(args[0]).unlink()
        return 0
    name, chart = args
    if verb == "install" and _release_path(name).exists():
        raise SystemExit("Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
    if Path(chart).resolve() != render.CHART_DIR:
        raise SystemExit(f"guide helm: {chart} is not this repository's chart")
    values = _given_values(flags)
    if "--reset-then-reuse-values" in flags or "--reuse-values" in flags:
        values = _merge(_release(name)["values"], values)
    try:
        objects = render.render_objects(values, name=name, namespace=namespace or "default")
    except helm_python.HelmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    _release_path(name).parent.mkdir(exist_ok=True)
    release = {"namespace": namespace, "values": values, "objects": objects}
    _release_path(name).write_text(json.dumps(release))
    _log("helm-release", argv, name=name, release=release)
    return 0


def _store(objects: list[dict[str, Any]], argv: list[str]) -> None:
    for obj in objects:
        _log("applied", argv, object=obj)


def kubectl(argv: list[str]) -> int:
    if "create" in argv and "secret" in argv:
        dry_run = "--dry-run=client" in argv
        command = [os.environ["GUIDE_REAL_KUBECTL"], *argv]
        if not dry_run:
            command += ["--dry-run=client", "-o", "yaml"]
        result = subprocess.run(command, capture_output=True, text=True)
        _log("kubectl", argv, verb="create secret", returncode=result.returncode)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr, end="")
            return result.returncode
        if dry_run:
            print(result.stdout, end="")
        else:
            _store([yaml.safe_load(result.stdout)], argv)
        return 0
    if argv[:1] == ["apply"] and argv[1:3] == ["-f", "-"]:
        _log("kubectl", argv, verb="apply")
        _store([d for d in yaml.safe_load_all(sys.stdin.read()) if d], argv)
        return 0
    _log("kubectl", argv, verb=_kubectl_verb(argv))
    return 0


def _kubectl_verb(argv: list[str]) -> str:
    """The first word that is neither a flag nor a namespace flag's value."""
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-n", "--namespace"):
            rest.pop(0)
        elif not arg.startswith("-"):
            return arg
    return ""


def main() -> int:
    program, *argv = sys.argv[1:]
    if program == "helm":
        return helm(argv)
    if program == "kubectl":
        return kubectl(argv)
    _log(program, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
