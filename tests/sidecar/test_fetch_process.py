"""`sidecred fetch` as a process: its output, its errors, and children that hang or crash."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.fetch_process import FetchProcess
from sidecred.sidecar.reactor import Reactor
from sidecred.sidecar.refresh_loop import Refresher
from sidecred.sidecar.schedule import DEFAULT_POLICY
from tests.sidecar.sidecar_process import REPO, ROLE_ARN, run_cli, sidecar_env
from tests.support.scripted_sts import access_denied, success_xml

PY = sys.executable


def gone(pid: int) -> bool:
    """The process is neither running nor a zombie: it has been reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state not in "RSDZT"  # a reused pid would be another process entirely


def run_fetch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("fetch", env=env, timeout=60)


def test_fetch_prints_credential_process_json(scripted_sts_factory, tmp_path: Path):
    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    result = run_fetch(sidecar_env(tmp_path, sts.url))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out) == [
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
        "AccountId",
    ]
    assert out["Version"] == 1 and out["AccessKeyId"] == "ASIAFAULTSTSKEY00001"
    assert out["Expiration"].endswith("Z") and out["AccountId"] == "123456789012"
    assert sts.calls[0]["Action"] == "AssumeRoleWithWebIdentity"
    assert out["SecretAccessKey"] not in result.stderr


def test_botocore_reads_fetch_as_a_credential_process(scripted_sts_factory, tmp_path: Path):
    """The output is what AWS SDKs accept from `credential_process` (botocore checks it)."""
    import botocore.session

    sts = scripted_sts_factory(lambda p: (200, success_xml(p)))
    env = sidecar_env(tmp_path, sts.url)
    script = tmp_path / "fetch.sh"
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    script.write_text(f"#!/bin/sh\n{exports}cd {REPO}\nexec {PY} -m sidecred.cli fetch\n")
    script.chmod(0o755)
    config = tmp_path / "aws-config"
    config.write_text(f"[profile debug]\ncredential_process = {script}\n")
    session = botocore.session.Session(profile="debug")
    session.set_config_variable("config_file", str(config))
    creds = session.get_credentials()
    assert creds is not None and creds.method == "custom-process"
    assert creds.get_frozen_credentials().access_key == "ASIAFAULTSTSKEY00001"


def test_fetch_failure_is_one_json_line_with_the_sts_error(scripted_sts_factory, tmp_path: Path):
    sts = scripted_sts_factory(access_denied)
    result = run_fetch(sidecar_env(tmp_path, sts.url))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert record["event"] == "fetch_failed" and record["level"] == "error"
    assert record["code"] == "AccessDenied" and record["refused"] is True
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in record["error"]


def test_fetch_config_error_exits_2(tmp_path: Path):
    env = sidecar_env(tmp_path, "http://127.0.0.1:9")
    del env["SIDECRED_ROLE_ARN"]
    result = run_fetch(env)
    assert result.returncode == 2
    assert "SIDECRED_ROLE_ARN is not set" in result.stderr


def children() -> set[int]:
    """This process's children, running or not yet reaped (zombies)."""
    return {
        int(pid)
        for listing in Path("/proc/self/task").glob("*/children")
        for pid in listing.read_text().split()
    }


def fetch_with(command: list[str], timeout: float = 60.0) -> tuple[FetchProcess, SourceError]:
    """Run one fetch; the child it started must be gone (killed and reaped) afterwards."""
    source = FetchProcess(ROLE_ARN, "shop.web", tuple(command), timeout)
    before = children()
    with pytest.raises(SourceError) as err:
        source.fetch_blocking()
    assert children() <= before
    return source, err.value


def test_a_hanging_fetch_is_killed_and_reaped():
    _source, error = fetch_with([PY, "-c", "import time; time.sleep(600)"], timeout=0.5)
    assert error.code == "FetchTimeout"
    assert "did not finish within 0.5 s and was killed" in error.message


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL"),
        (
            "import sys; sys.stderr.write('Traceback: boom'); sys.exit(3)",
            "exited with status 3: Traceback: boom",
        ),
        ("print('not json')", "printed no credential_process JSON"),
    ],
)
def test_a_crashing_fetch_is_reported_and_reaped(script, expected):
    _source, error = fetch_with([PY, "-c", script])
    assert error.code in ("FetchProcessFailed", "FetchOutputInvalid")
    assert expected in error.message


def test_a_hanging_fetch_is_retried_with_backoff_and_leaves_no_zombie():
    source = FetchProcess(ROLE_ARN, "shop.web", (PY, "-c", "import time; time.sleep(600)"), 0.2)
    policy = DEFAULT_POLICY.replace(backoff_base_seconds=0.01, backoff_cap_seconds=0.05)
    cache = CredentialCache(ROLE_ARN, policy=policy)
    pids: list[int] = []
    reactor = Reactor()
    refresher = Refresher(reactor, cache, source, {})
    original_start = source.start

    def start(reactor_: Reactor, done):  # note every child, and stop after the third failure
        def noted(result):
            done(result)
            if cache.failures_in_row >= 3:
                reactor.stop()

        run = original_start(reactor_, noted)
        pids.append(run.pid)
        return run

    source.start = start  # type: ignore[method-assign]
    try:
        refresher.start()
        reactor.run()
        refresher.stop()
    finally:
        reactor.close()
    assert cache.failures_in_row == 3 and cache.fetches == 3
    assert cache.last_error is not None and cache.last_error.code == "FetchTimeout"
    assert all(gone(pid) for pid in pids) and len(pids) >= 2


def test_serving_modules_do_not_import_botocore_tls_asyncio_or_http_clients():
    code = (
        "import sys, sidecred.sidecar.runtime, sidecred.sidecar.main;"
        "print(sorted(m for m in ('botocore', 'http.client', 'email', 'urllib.request', 'ssl',"
        " 'asyncio', 'dataclasses', 'subprocess') if m in sys.modules))"
    )
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


class TimedSource:
    """A source whose fetch answers on the reactor a moment later; counts fetches in flight."""

    def __init__(self, name: str, tally: dict[str, int]) -> None:
        self.role_arn, self.session_name, self.tally = f"{ROLE_ARN}-{name}", f"shop.{name}", tally

    def start(self, reactor: Reactor, done):
        self.tally["now"] += 1
        self.tally["most"] = max(self.tally["most"], self.tally["now"])

        class Run:
            def kill(self) -> None: ...

        run = Run()
        run.done = done

        def answer() -> None:
            self.tally["now"] -= 1
            self.tally["fetched"] += 1
            run.done = None
            done(SourceError("Throttling", "Rate exceeded"))

        reactor.call_later(0.01, answer)
        return run


def test_the_gate_lets_two_roles_fetch_at_once_and_the_rest_wait_their_turn():
    from sidecred.sidecar.refresh_loop import FetchGate

    reactor = Reactor()
    gate = FetchGate(limit=2)
    tally = {"now": 0, "most": 0, "fetched": 0}
    policy = DEFAULT_POLICY.replace(backoff_base_seconds=60.0)  # one fetch each within the test
    refreshers = [
        Refresher(
            reactor, CredentialCache(ROLE_ARN, policy=policy), TimedSource(n, tally), {}, gate
        )
        for n in ("pod", "a", "b", "c", "d")
    ]

    def check() -> None:
        if tally["fetched"] == len(refreshers):
            reactor.stop()
        else:
            reactor.call_later(0.005, check)

    try:
        for refresher in refreshers:
            refresher.start()
        reactor.call_later(0.005, check)
        reactor.run()
    finally:
        for refresher in refreshers:
            refresher.stop()
        reactor.close()
    assert tally["fetched"] == 5 and tally["most"] == 2
    assert all(r.cache.fetches == 1 and r.cache.failures_in_row == 1 for r in refreshers)
    assert gate.running == 0 and gate.waiting == []


def test_stopping_a_refresher_kills_its_fetch_and_frees_its_place_once():
    from sidecred.sidecar.refresh_loop import FetchGate

    source = FetchProcess(ROLE_ARN, "shop.web", (PY, "-c", "import time; time.sleep(600)"), 600)
    reactor = Reactor()
    gate = FetchGate(limit=1)
    refresher = Refresher(reactor, CredentialCache(ROLE_ARN), source, {}, gate)
    try:
        refresher.start()  # spawns the child at once, without running the loop
        run = refresher.running
        assert run is not None and run.pid is not None and not gone(run.pid)
        assert gate.running == 1
        refresher.stop()
        assert gone(run.pid) and gate.running == 0
        assert run.timer is not None and run.timer.callback is None  # its timeout is cancelled
        assert run.done is None  # and it will answer nobody
    finally:
        reactor.close()


def test_a_child_whose_closed_pipe_number_another_child_takes_still_finishes():
    """Two roles fetch at once: A closes its stdout first and its stderr later; B starts in
    between, and its new pipe takes the number A's stdout had. A must still be reaped when
    its stderr closes (not left until its timeout), and B's pipe must stay B's."""
    reactor = Reactor()
    outcomes: dict[str, Credentials | SourceError] = {}

    def done(name: str) -> Callable[[Credentials | SourceError], None]:
        def record(result: Credentials | SourceError) -> None:
            outcomes[name] = result
            if len(outcomes) == 2:
                reactor.stop()

        return record

    first = FetchProcess(
        ROLE_ARN, "shop.a", (PY, "-c", "import os, time; os.close(1); time.sleep(0.5)"), 5.0
    )
    second = FetchProcess(
        ROLE_ARN, "shop.b", (PY, "-c", "import time; time.sleep(1); print('not json')"), 5.0
    )
    first_run = first.start(reactor, done("first"))
    stdout_number = first_run.stdout_fd
    started: list[int] = []

    def start_second() -> None:
        started.append(second.start(reactor, done("second")).stdout_fd)

    reactor.call_later(0.3, start_second)  # A's stdout has closed by then; its stderr has not
    try:
        reactor.run()
    finally:
        reactor.close()
    assert started == [stdout_number]  # the number was taken again: the case under test
    assert isinstance(outcomes["first"], SourceError)
    assert outcomes["first"].code != "FetchTimeout", outcomes["first"].message
    assert isinstance(outcomes["second"], SourceError)
    assert "printed no credential_process JSON" in outcomes["second"].message
