"""The sidecar as a real process against moto behind a fault-injecting proxy.

At startup every STS fault leaves the sidecar up, not ready and saying why, and
it recovers by itself. Once credentials are held, faults never reach the
request path: the old credentials keep being served, fast. Retries back off
with a cap and with jitter.
"""

from __future__ import annotations

import http.client
import itertools
import signal
import time
from pathlib import Path

import pytest

from sidecred.dev.processes import wait_until
from tests.sidecar.sidecar_process import WAIT_SECONDS, SidecarProcess, sidecar_env
from tests.support.sts_fault_proxy import ERRORS, StsFaultProxy

pytestmark = pytest.mark.slow

FAILING_MODES = ("refused", *ERRORS)


def failures(sidecar: SidecarProcess) -> list[dict[str, object]]:
    return [r for r in sidecar.log_records() if r["event"] == "sts_failed"]


def refreshes(sidecar: SidecarProcess) -> int:
    return sum(1 for r in sidecar.log_records() if r["event"] == "credentials_refreshed")


def expected_error(mode: str, proxy: StsFaultProxy) -> tuple[str, str]:
    """The STS error code and the text every channel must carry for `mode`."""
    if mode == "refused":
        return (
            "StsUnreachable",
            f"cannot reach {proxy.url.rstrip('/')}: [Errno 111] Connection refused",
        )
    _, code, message = ERRORS[mode]
    return code, message


def get_credentials(port: int, token: str, timeout: float) -> tuple[int, bytes]:
    """One request on a fresh connection, as an SDK's credential provider makes it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/v1/credentials", headers={"Authorization": token})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("mode", FAILING_MODES)
def test_fault_at_startup_reports_why_and_recovers(
    mode, sts_proxy, sidecar_factory, tmp_path: Path
):
    sts_proxy.mode = mode
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    # Two failed calls: it stays up and keeps retrying (no crash loop).
    wait_until(
        lambda: len(failures(sidecar)) >= 2,
        timeout=WAIT_SECONDS,
        what=f"two failed STS calls; log:\n{sidecar.log()}",
    )
    assert sidecar.process.poll() is None
    code, text = expected_error(mode, sts_proxy)

    status, readyz = sidecar.readyz()
    assert status == 503
    assert f"{code}: {text}" in readyz
    status, body = sidecar.credentials(sidecar.token())
    assert status == 503
    assert body["Code"] == body["code"] == code
    assert text in body["Message"] and body["Message"] == body["message"]
    if mode == "access-denied":
        assert body["Message"] == text  # verbatim, nothing added or cut
    record = failures(sidecar)[0]
    assert record["level"] == "error" and record["code"] == code and text in str(record["error"])

    sts_proxy.mode = "pass"
    sidecar.wait_ready()
    assert sidecar.credentials(sidecar.token())[0] == 200
    assert sidecar.process.poll() is None


def test_slow_sts_at_startup_answers_not_ready_at_once(sts_proxy, sidecar_factory, tmp_path: Path):
    sts_proxy.mode = "slow"
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    wait_until(
        lambda: sts_proxy.in_flight == 1, timeout=WAIT_SECONDS, what="a slow STS call in flight"
    )

    status, readyz = sidecar.readyz()
    assert status == 503 and "CredentialsNotReady" in readyz
    status, body = get_credentials(sidecar.port, sidecar.token(), timeout=0.5)
    assert status == 503 and b"CredentialsNotReady" in body

    sts_proxy.mode = "pass"
    sidecar.wait_ready()  # the slow answer itself arrives within botocore's read timeout


def fetch_children(pid: int) -> list[int]:
    """The sidecar's child processes (its `sidecred fetch`)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_sigterm_during_a_fetch_ends_the_fetch_child_too(
    sts_proxy, sidecar_factory, tmp_path: Path
):
    sts_proxy.mode = "slow"
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    wait_until(
        lambda: sts_proxy.in_flight == 1, timeout=WAIT_SECONDS, what="a slow STS call in flight"
    )
    children = fetch_children(sidecar.process.pid)
    assert len(children) == 1  # the fetch waiting on STS

    sidecar.signal(signal.SIGTERM)
    assert sidecar.process.wait(timeout=30) == 0
    # Killed and reaped by the sidecar, not left running (or a zombie) under init.
    assert not Path(f"/proc/{children[0]}").exists()
    assert any(r["event"] == "stopped" for r in sidecar.log_records())


def test_faults_after_startup_keep_serving_the_held_credentials(
    sts_proxy, sidecar_factory, tmp_path: Path
):
    # A 24 s session: the first refresh comes 6 s after issue (a quarter of the
    # session), and the faults below are all seen well before it expires.
    sts_proxy.expires_in = 24
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    sidecar.wait_ready()
    held = sidecar.credentials(sidecar.token())
    assert held[0] == 200

    for mode in FAILING_MODES:
        sts_proxy.mode = mode
        code, _ = expected_error(mode, sts_proxy)
        wait_until(
            lambda code=code: any(r["code"] == code for r in failures(sidecar)),
            timeout=WAIT_SECONDS,
            what=f"a failed refresh in mode {mode}; log:\n{sidecar.log()}",
        )
        assert sidecar.credentials(sidecar.token()) == held, mode
        status, readyz = sidecar.readyz()
        if mode == "access-denied":
            # A refusal (the role is no longer allowed) turns the pod not ready at
            # once, saying why, while what is held is still served.
            _, text = expected_error(mode, sts_proxy)
            assert status == 503 and f"not ready: {code}: {text}" in readyz, readyz
            assert "still serving the credentials held" in readyz
        else:
            assert status == 200, mode
        failed = next(r for r in failures(sidecar) if r["code"] == code)
        assert failed["serving_until"] == held[1]["Expiration"]

    refreshed = refreshes(sidecar)
    sts_proxy.mode = "pass"
    wait_until(
        lambda: refreshes(sidecar) > refreshed,
        timeout=WAIT_SECONDS,
        what="a successful refresh after the faults",
    )
    status, body = sidecar.credentials(sidecar.token())
    assert status == 200 and body["AccessKeyId"] != held[1]["AccessKeyId"]


def test_slow_sts_never_delays_the_request_path(sts_proxy, sidecar_factory, tmp_path: Path):
    sts_proxy.expires_in = 20  # first refresh 5 s after issue
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    sidecar.wait_ready()
    token = sidecar.token()
    _, held = get_credentials(sidecar.port, token, timeout=5)
    sts_proxy.mode = "slow"
    wait_until(
        lambda: sts_proxy.in_flight == 1,
        timeout=WAIT_SECONDS,
        what="the refresh call to be held by the slow STS",
    )

    latencies: list[float] = []
    overlapping = 0
    for _ in range(200):
        before = sts_proxy.in_flight
        start = time.perf_counter()
        # A 0.5 s client timeout: a request path that waited on the 5 s STS call would fail here.
        status, body = get_credentials(sidecar.port, token, timeout=0.5)
        latencies.append(time.perf_counter() - start)
        overlapping += before == 1 and sts_proxy.in_flight == 1
        assert (status, body) == (200, held)
    # The requests really ran while an STS call was hanging.
    assert overlapping > 0
    print(
        f"\nslow STS: 200 requests, {overlapping} during the hung call, "
        f"max latency {max(latencies) * 1000:.1f} ms, median {sorted(latencies)[100] * 1000:.1f} ms"
    )


def test_backoff_is_capped_and_jittered(sts_proxy_factory, sidecar_factory, tmp_path: Path):
    cap = 4.0
    attempts = 5  # ceilings 1, 2, 4, 4, 4: growing, then held at the cap
    proxies = [sts_proxy_factory(), sts_proxy_factory()]
    sidecars = []
    for i, proxy in enumerate(proxies):
        proxy.mode = "throttling"
        home = tmp_path / f"pod{i}"
        home.mkdir()
        env = sidecar_env(home, proxy.url, SIDECRED_RETRY_CAP_SECONDS=str(cap))
        sidecars.append(sidecar_factory(env))
    for sidecar in sidecars:
        wait_until(
            lambda s=sidecar: len(failures(s)) >= attempts,
            timeout=WAIT_SECONDS,
            what="five throttled calls",
        )

    sequences = []
    for sidecar, proxy in zip(sidecars, proxies, strict=True):
        records = failures(sidecar)[:attempts]
        assert [r["attempt"] for r in records] == list(range(1, attempts + 1))
        delays = [float(r["retry_in"]) for r in records]  # type: ignore[arg-type]
        for attempt, delay in enumerate(delays):
            assert 0 <= delay <= min(cap, 2.0**attempt), (attempt, delays)
        sequences.append(delays)
        calls = [c.at for c in proxy.calls_in("throttling")][:attempts]
        gaps = [round(b - a, 2) for a, b in itertools.pairwise(calls)]
        print(f"\nbackoff: logged retry_in {delays}; gaps between STS calls {gaps}")
    assert sequences[0] != sequences[1]  # full jitter: two pods don't retry in lockstep


@pytest.mark.parametrize("mode", ["throttling", "server-error"])
def test_each_failed_refresh_is_one_sts_call(mode, sts_proxy, sidecar_factory, tmp_path: Path):
    # The STS call must not retry underneath the refresh loop: a throttled STS would
    # get twice the calls, outside the loop's backoff and unlogged.
    sts_proxy.mode = mode
    sidecar = sidecar_factory(sidecar_env(tmp_path, sts_proxy.url))
    wait_until(lambda: len(failures(sidecar)) >= 3, timeout=WAIT_SECONDS, what="three failed calls")
    sidecar.stop()
    logged = len(failures(sidecar))
    # At most one call may have been cut short by the kill before it was logged.
    assert logged <= len(sts_proxy.calls) <= logged + 1
