"""`--log-level` (and `SIDECRED_LOG_LEVEL`) on every command, in the one JSON log schema."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import yaml

from deploy import render
from sidecred import cli
from sidecred.broker.serve_cli import build_parser as broker_parser
from sidecred.jsonlog import ENV_LOG_LEVEL, level_from_env
from sidecred.ops import kubectl
from sidecred.serving.cli import configure_logging
from sidecred.sidecar import log as sidecar_log
from sidecred.webhook.serve_cli import build_parser as webhook_parser


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_sidecred_command_takes_log_level(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = cli.main([command, "--help"])
    except SystemExit as exited:  # argparse's own exit after --help
        status = int(exited.code or 0)
    assert status == 0
    assert "--log-level debug|info|warning|error" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["check", "status", "audit"])
def test_every_kubectl_sidecred_command_takes_log_level(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kubectl.main([command, "--help"]) == 0
    assert "--log-level" in capsys.readouterr().out


def test_a_bad_level_is_a_usage_error_naming_the_levels(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "-f", "-", "--log-level", "loud"]) == 2
    assert "'loud' is not one of debug, info, warning, error" in capsys.readouterr().err
    monkeypatch.setenv(ENV_LOG_LEVEL, "verbose")
    with pytest.raises(ValueError, match="'verbose' is not one of"):
        level_from_env()


def test_the_env_variable_is_the_flags_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LOG_LEVEL, "WARNING")
    args = webhook_parser().parse_args(["--tls-cert", "c", "--tls-key", "k"])
    assert args.log_level == "warning"
    args = webhook_parser().parse_args(
        ["--tls-cert", "c", "--tls-key", "k", "--log-level", "debug"]
    )
    assert args.log_level == "debug"


def test_stdlib_logging_follows_the_level(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("warning", stream)
    logger = logging.getLogger("sidecred.test.level")
    logger.info("hidden")
    logger.warning("shown", extra={"fields": {"n": 1}})
    configure_logging("debug", stream)
    logger.debug("details")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(entry["level"], entry["event"]) for entry in lines] == [
        ("warning", "shown"),
        ("debug", "details"),
    ]
    # the kubernetes client logs request bodies at debug: never below warning
    assert logging.getLogger("kubernetes").getEffectiveLevel() == logging.WARNING


def test_the_sidecars_lines_follow_the_level() -> None:
    stream = io.StringIO()
    try:
        sidecar_log.set_level("warning")
        sidecar_log.log("info", "refreshed", stream=stream)
        sidecar_log.log("error", "sts_failed", stream=stream)
        sidecar_log.set_level("debug")
        sidecar_log.log("debug", "schedule", stream=stream)
    finally:
        sidecar_log.set_level("info")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["sts_failed", "schedule"]


def test_the_sidecar_refuses_a_bad_level_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecred.cli", "sidecar"],
        env={**os.environ, ENV_LOG_LEVEL: "chatty"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    line = json.loads(result.stderr.splitlines()[-1])
    assert line["event"] == "config_invalid" and "chatty" in line["error"]


def _extra_args_examples() -> list[list[str]]:
    """The lists values.yaml's comments give as `extraArgs` examples (`e.g. [...]`), the
    webhook's then the broker's."""
    text = (render.CHART_DIR / "values.yaml").read_text()
    found = re.findall(r"# [^\n]*e\.g\. (\[[^\]]*\])[^\n]*\n\s*extraArgs:", text)
    examples = [yaml.safe_load(match) for match in found]
    assert len(examples) == 2 and all(isinstance(e, list) and e for e in examples)
    return [[str(arg) for arg in example] for example in examples]


@pytest.mark.parametrize(
    ("index", "component", "parser"),
    [(0, "webhook", webhook_parser), (1, "broker", broker_parser)],
)
def test_values_extra_args_example_parses_with_the_real_parser(
    index: int, component: str, parser: Callable[[], argparse.ArgumentParser]
) -> None:
    """The chart renders values.yaml's own `extraArgs` example into the container's args,
    and `sidecred webhook`/`sidecred broker`'s own parser accepts them."""
    example = _extra_args_examples()[index]
    values: dict[str, object] = {"credentialSource": "broker"}
    if component == "webhook":
        values["extraArgs"] = example
    else:
        values["broker"] = {"extraArgs": example}
    deployments = [o for o in render.render_objects(values) if o["kind"] == "Deployment"]
    (deployment,) = [
        d
        for d in deployments
        if d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sidecred"] and container["args"][0] == component
    args = parser().parse_args(container["args"][1:])
    assert args.log_level == "debug"


def test_logging_follows_stderr_after_the_command_that_set_it_up(
    restore_logging: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command run in-process (kubectl sidecred's tests, the demo) sets logging up on the
    stderr of its time; a thread logging after that stderr was closed still reaches the
    stderr in force, instead of a 'Logging error' on a closed stream."""
    earlier = io.StringIO()
    monkeypatch.setattr(sys, "stderr", earlier)
    configure_logging("info")
    monkeypatch.undo()
    earlier.close()
    logging.getLogger("sidecred.test").info("cache synced")
    err = capsys.readouterr().err
    assert json.loads(err)["event"] == "cache synced"
