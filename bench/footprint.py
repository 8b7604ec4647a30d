"""Benchmark 2: the sidecar's footprint, multiplied by every pod that runs one.

Runs `sidecred sidecar` from a regular (wheel) install, as a pod does, against
a local moto STS, and measures in one run, side by side with bare CPython and
a bare asyncio server (bench/baseline_server.py) on the same interpreter:

- start to ready: process start until `/readyz` 200 (credentials held), median;
- steady memory after 10,000 credential requests: RSS and anonymous memory
  (the unshared part each pod pays), from /proc/PID/smaps_rollup;
- peak during refreshes: the serving process plus its `sidecred fetch` child,
  sampled every 2 ms while STS (moto behind a proxy that shortens sessions to
  20 s) is called again and again;
- what the split costs: `sidecred fetch` run alone (start, botocore, one STS call).

Targets: steady RSS <= 22 MB and anonymous <= 12 MB; refresh peak <= 64 MB;
ready <= 0.8 s (median).

    python3 bench/footprint.py [--runs 5] [--requests 10000] [--before GIT_REV]

`--before` also measures another revision (the one before a change) the same way, side by side.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.dev.processes import wait_until
from sidecred.sidecar.config import CREDENTIALS_PATH
from tests.sidecar.sidecar_process import SidecarProcess

STEADY_RSS_TARGET = 22.0
STEADY_ANON_TARGET = 12.0
PEAK_TARGET = 64.0
READY_TARGET_S = 0.8
REFRESHES_SAMPLED = 4
SAMPLE_EVERY_S = 0.002


def hammer(port: int, token: str, requests: int) -> None:
    """`requests` GETs over one keep-alive connection, each answer read fully and checked."""
    request = (
        f"GET {CREDENTIALS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        stream = sock.makefile("rb")
        for _ in range(requests):
            sock.sendall(request)
            status = stream.readline()
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {status!r}")
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            stream.read(length)


def bare_python(python: Path) -> dict[str, float]:
    """Memory of `python -c` kept alive on stdin."""
    script = "import sys\nprint('ok', flush=True)\nsys.stdin.read()\n"
    process = subprocess.Popen(
        [python, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        return support.memory_mib(process.pid)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


def bare_asyncio_server(
    python: Path, response: bytes, requests: int, work: Path
) -> dict[str, float]:
    """Memory of the bare asyncio server after `requests` requests."""
    response_file = work / "response"
    response_file.write_bytes(response)
    port = support.free_port()
    server = Path(__file__).with_name("baseline_server.py")
    process = subprocess.Popen([python, str(server), str(port), str(response_file)])
    try:
        wait_until(lambda: _listening(port), 30, "the baseline server")
        hammer(port, "unused", requests)
        return support.memory_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def credentials_response(port: int, token: str) -> bytes:
    from bench.endpoint import raw_response

    return raw_response(port, token)


def ready_runs(python: Path, sts_url: str, runs: int) -> tuple[list[float], SidecarProcess, Path]:
    """Start-to-ready times of `runs` sidecars; the last one is left running."""
    times: list[float] = []
    for run in range(runs):
        work = support.workdir(f"footprint-{run}")
        env = installed_env(work, sts_url)
        started = time.monotonic()
        sidecar = support.start_sidecar(env, work, python=python)
        sidecar.wait_ready(interval=0.005)
        times.append(time.monotonic() - started)
        print(f"sidecar run {run + 1}: ready {times[-1]:.3f} s")
        if run < runs - 1:
            sidecar.stop()
    return times, sidecar, work


def installed_env(work: Path, sts_url: str) -> dict[str, str]:
    env = support.sidecar_env(work, sts_url)
    del env["PYTHONPATH"]  # the installed package, not the checkout
    return env


def refresh_peak(python: Path, moto_url: str) -> tuple[float, float, float]:
    """(peak MB of server + fetch child, the child's own peak, the server's RSS) over refreshes."""
    from tests.support.sts_fault_proxy import StsFaultProxy

    proxy = StsFaultProxy(moto_url)
    proxy.expires_in = 20  # sessions of 20 s: a refresh every few seconds
    work = support.workdir("footprint-peak")
    sidecar = support.start_sidecar(installed_env(work, proxy.url), work, python=python)
    peak = child_peak = server_rss = 0.0
    try:
        sidecar.wait_ready()
        deadline = time.monotonic() + 120
        while len(proxy.calls) < REFRESHES_SAMPLED + 1 and time.monotonic() < deadline:
            server = support.memory_mib(sidecar.process.pid)["Rss"]
            kids = 0.0
            for pid in support.children(sidecar.process.pid):
                try:
                    kids += support.memory_mib(pid)["Rss"]
                except (OSError, KeyError):
                    pass  # the child exited between listing and reading
            peak, child_peak = max(peak, server + kids), max(child_peak, kids)
            server_rss = max(server_rss, server)
            time.sleep(SAMPLE_EVERY_S)  # sampling interval of a memory probe
    finally:
        sidecar.stop()
        proxy.close()
    return peak, child_peak, server_rss


def fetch_alone(python: Path, sts_url: str, runs: int) -> float:
    """Median seconds for `sidecred fetch` alone: interpreter, botocore, one STS call."""
    times = []
    for run in range(runs):
        work = support.workdir(f"footprint-fetch-{run}")
        env = installed_env(work, sts_url)
        started = time.monotonic()
        out = subprocess.run(
            [python, "-m", "sidecred.cli", "fetch"],
            env=env,
            cwd=work,
            capture_output=True,
            check=True,
        )
        times.append(time.monotonic() - started)
        json.loads(out.stdout)
    return support.median(times)


@dataclass(frozen=True)
class Measured:
    """One revision's figures (MB and seconds)."""

    ready_times: list[float]
    steady: dict[str, float]
    peak: float
    child_peak: float
    server_rss: float
    bare_server: dict[str, float]
    bare: dict[str, float]
    fetch_s: float

    @property
    def ready(self) -> float:
        return support.median(self.ready_times)


def measure(rev: str | None, moto_url: str, runs: int, requests: int) -> Measured:
    """Every figure for the checkout (`rev` None) or a git revision, from its installed wheel."""
    python = support.installed_python(support.workdir("footprint-install"), rev)
    ready_times, sidecar, _ = ready_runs(python, moto_url, runs)
    try:
        token = sidecar.token()
        response = credentials_response(sidecar.port, token)
        hammer(sidecar.port, token, requests)
        steady = support.memory_mib(sidecar.process.pid)
    finally:
        sidecar.stop()
    bare_server = bare_asyncio_server(python, response, requests, support.workdir("base"))
    peak, child_peak, server_rss = refresh_peak(python, moto_url)
    fetch_s = fetch_alone(python, moto_url, runs) if rev is None else float("nan")
    bare = bare_python(python)
    return Measured(ready_times, steady, peak, child_peak, server_rss, bare_server, bare, fetch_s)


def tables(after: Measured, before: Measured | None, requests: int) -> str:
    bare = after.bare
    rows = [
        [
            "bare `python -c` (same interpreter)",
            f"{bare['Rss']:.1f}",
            f"{bare['Anonymous']:.1f}",
            "",
        ],
        [
            f"bare asyncio server, after {requests:,} requests",
            f"{after.bare_server['Rss']:.1f}",
            f"{after.bare_server['Anonymous']:.1f}",
            "",
        ],
    ]
    for name, m in (("before", before), ("**after**", after)):
        if m is None:
            continue
        rows += [
            [
                f"sidecred sidecar {name}: credentials held, after {requests:,} requests",
                f"{m.steady['Rss']:.1f}",
                f"{m.steady['Anonymous']:.1f}",
                f"{m.ready:.3f}",
            ],
            [
                f"sidecred sidecar {name}: peak during refreshes, server + fetch child "
                f"(child alone {m.child_peak:.1f}, server {m.server_rss:.1f})",
                f"{m.peak:.1f}",
                "",
                "",
            ],
        ]
    table = support.markdown_table(
        ["process", "RSS MB", "anonymous MB", "start to ready s (median)"], rows
    )
    checks = [
        (
            f"steady RSS <= {STEADY_RSS_TARGET:g} MB",
            f"{after.steady['Rss']:.1f} MB",
            after.steady["Rss"] <= STEADY_RSS_TARGET,
        ),
        (
            f"steady anonymous <= {STEADY_ANON_TARGET:g} MB",
            f"{after.steady['Anonymous']:.1f} MB",
            after.steady["Anonymous"] <= STEADY_ANON_TARGET,
        ),
        (
            f"peak during a refresh <= {PEAK_TARGET:g} MB",
            f"{after.peak:.1f} MB",
            after.peak <= PEAK_TARGET,
        ),
        (
            f"start to ready <= {READY_TARGET_S:g} s (median of {len(after.ready_times)})",
            f"{after.ready:.3f} s (min {min(after.ready_times):.3f}, max {max(after.ready_times):.3f})",
            after.ready <= READY_TARGET_S,
        ),
    ]
    summary = support.targets_table(checks)
    return table + "\n\n" + summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--before", help="also measure this git revision, side by side")
    args = parser.parse_args()

    moto = support.start_moto()
    try:
        before = measure(args.before, moto.url, args.runs, args.requests) if args.before else None
        after = measure(None, moto.url, args.runs, args.requests)
    finally:
        moto.stop()
    text = tables(after, before, args.requests)
    print("\n" + text)
    command = "python3 bench/footprint.py" + (f" --before {args.before}" if args.before else "")
    body = f"""
Setup: `sidecred sidecar` (web-identity, token mode env, its env from the webhook's own patch)
from a wheel installed in a fresh venv (as a pod runs it: no editable-install finder), against a
local `moto_server`. "Before" is revision `{args.before}` built and measured the same way in the
same run. Start to ready runs from `Popen` to the first `/readyz` 200 (polled every 5 ms): interpreter
start, the server's imports, the listeners, and (after) the first `sidecred fetch` child. Memory
is `Rss` and `Anonymous` from `/proc/PID/smaps_rollup` after {args.requests:,} keep-alive
`GET /v1/credentials`. The refresh peak samples the serving process plus its children every
{SAMPLE_EVERY_S * 1000:g} ms over {REFRESHES_SAMPLED} refreshes (moto behind a proxy that shortens
sessions to 20 s). The machine is shared (2 cores, other engineers' jobs): start-up times vary
with its load, memory does not.

{text}

What the split costs: `sidecred fetch` alone takes {after.fetch_s:.3f} s (median of {args.runs}:
interpreter, botocore, one STS call); it runs once at start and at each refresh (twice an hour with
1 h sessions). In exchange the serving process holds
{after.steady["Rss"] - after.bare_server["Rss"]:+.1f} MB RSS /
{after.steady["Anonymous"] - after.bare_server["Anonymous"]:+.1f} MB anonymous against the bare
asyncio server, and botocore's memory is paid only while a fetch runs.
"""
    support.write_section("footprint", "2. Footprint", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
