"""One JSON log schema for every sidecred process: the sidecar's lines and the webhook's
stdlib-logging lines carry `ts`, `level` and `event` first, then their fields."""

from __future__ import annotations

import io
import json
import logging
import re

from sidecred.jsonlog import EXCEPTION_CHARS, FIELD_CHARS, LIST_ITEMS, format_line
from sidecred.serving.cli import JsonLineFormatter
from sidecred.sidecar import log as sidecar_log

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def webhook_line(message: str, *args: object, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger("sidecred.test.jsonlog")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning(message, *args, **extra)
    finally:
        logger.handlers[:] = []
    return json.loads(stream.getvalue())


def test_sidecar_and_webhook_lines_share_the_schema() -> None:
    stream = io.StringIO()
    sidecar_log.log("warning", "sts_failed", stream=stream, code="AccessDenied")
    sidecar = json.loads(stream.getvalue())
    webhook = webhook_line("admission", extra={"fields": {"allowed": False}})

    assert list(sidecar)[:3] == list(webhook)[:3] == ["ts", "level", "event"]
    assert sidecar["level"] == webhook["level"] == "warning"
    assert TIMESTAMP.match(str(sidecar["ts"])) and TIMESTAMP.match(str(webhook["ts"]))
    assert sidecar["event"] == "sts_failed" and sidecar["code"] == "AccessDenied"
    assert webhook["event"] == "admission" and webhook["allowed"] is False
    assert webhook["logger"] == "sidecred.test.jsonlog"


def test_the_event_is_the_formatted_message() -> None:
    entry = webhook_line("cache synced: %d objects", 3)
    assert entry["event"] == "cache synced: 3 objects"


def test_a_field_never_overwrites_the_schema_keys() -> None:
    line = json.loads(format_line("info", "started", {"event": "x", "ts": "y", "level": "z"}, 0.0))
    assert line == {"ts": "1970-01-01T00:00:00.000Z", "level": "info", "event": "started"}
    entry = webhook_line("admission", extra={"fields": {"event": "forged", "level": "debug"}})
    assert entry["event"] == "admission" and entry["level"] == "warning"


def test_a_traceback_goes_in_its_own_field() -> None:
    try:
        raise ValueError("bad body")
    except ValueError:
        entry = webhook_line("request failed", exc_info=True)
    assert entry["event"] == "request failed"
    assert "ValueError: bad body" in str(entry["exception"])


def test_every_field_is_bounded_whatever_a_caller_sent() -> None:
    huge = "n" * 60_000
    fields = {
        "namespace": huge,
        "warnings": [huge] * 1000,
        "nested": {"a": {"b": {"c": {"d": {"e": huge}}}}},
        huge: "a key is a field too",
    }
    line = format_line("info", "admission " + huge, fields, 0.0)
    entry = json.loads(line)
    assert len(line) < 40_000  # from about 60 MB of text
    assert entry["namespace"] == "n" * FIELD_CHARS + f"...({60_000 - FIELD_CHARS} more characters)"
    assert len(entry["warnings"]) == LIST_ITEMS + 1
    assert entry["warnings"][-1] == f"...({1000 - LIST_ITEMS} more)"
    assert entry["event"].startswith("admission nnn") and len(entry["event"]) < FIELD_CHARS + 40
    assert isinstance(entry["nested"]["a"]["b"]["c"]["d"], str)  # deeper than MAX_DEPTH: text


def test_a_traceback_is_bounded_too() -> None:
    try:
        raise KeyError("k" * 100_000)
    except KeyError:
        entry = webhook_line("request failed", exc_info=True)
    assert len(entry["exception"]) < EXCEPTION_CHARS + 40
    assert entry["exception"].startswith("Traceback")
