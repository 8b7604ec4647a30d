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

    python3 bench/footprint.py [--runs 5] [--requests 10000] [--rev GIT_REV]

`--rev` measures another revision (for example the one before a change) the same way.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.sidecar.config import CREDENTIALS_PATH

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
        support.poll(lambda: _listening(port), 30, "the baseline server")
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


def ready_runs(python: Path, sts_url: str, runs: int) -> tuple[list[float], support.Sidecar, Path]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rev", help="measure this git revision instead of the checkout")
    args = parser.parse_args()

    python = support.installed_python(support.workdir("footprint-install"), args.rev)
    moto = support.start_moto()
    try:
        ready_times, sidecar, _ = ready_runs(python, moto.url, args.runs)
        try:
            token = sidecar.token()
            response = credentials_response(sidecar.port, token)
            hammer(sidecar.port, token, args.requests)
            steady = support.memory_mib(sidecar.process.pid)
        finally:
            sidecar.stop()
        bare = bare_python(python)
        bare_server = bare_asyncio_server(
            python, response, args.requests, support.workdir("footprint-base")
        )
        peak, child_peak, server_rss = refresh_peak(python, moto.url)
        fetch_s = fetch_alone(python, moto.url, args.runs) if args.rev is None else float("nan")
    finally:
        moto.stop()

    ready = support.median(ready_times)
    rows = [
        ["bare `python -c` (same interpreter)", f"{bare['Rss']:.1f}", f"{bare['Anonymous']:.1f}"],
        [
            f"bare asyncio server, after {args.requests:,} requests",
            f"{bare_server['Rss']:.1f}",
            f"{bare_server['Anonymous']:.1f}",
        ],
        [
            f"**sidecred sidecar**, credentials held, after {args.requests:,} requests",
            f"{steady['Rss']:.1f}",
            f"{steady['Anonymous']:.1f}",
        ],
        [
            f"sidecred sidecar during refreshes: peak, serving process + fetch child "
            f"(child alone {child_peak:.1f}, server {server_rss:.1f})",
            f"{peak:.1f}",
            "",
        ],
    ]
    table = support.markdown_table(["process", "RSS MB", "anonymous MB"], rows)
    summary = support.markdown_table(
        ["target", "measured", "result"],
        [
            [
                f"steady RSS <= {STEADY_RSS_TARGET:g} MB",
                f"{steady['Rss']:.1f} MB",
                support.verdict(steady["Rss"] <= STEADY_RSS_TARGET),
            ],
            [
                f"steady anonymous <= {STEADY_ANON_TARGET:g} MB",
                f"{steady['Anonymous']:.1f} MB",
                support.verdict(steady["Anonymous"] <= STEADY_ANON_TARGET),
            ],
            [
                f"peak during a refresh <= {PEAK_TARGET:g} MB",
                f"{peak:.1f} MB",
                support.verdict(peak <= PEAK_TARGET),
            ],
            [
                f"start to ready <= {READY_TARGET_S:g} s (median of {args.runs})",
                f"{ready:.3f} s (min {min(ready_times):.3f}, max {max(ready_times):.3f})",
                support.verdict(ready <= READY_TARGET_S),
            ],
        ],
    )
    print("\n" + table + "\n\n" + summary)
    if args.rev is not None:
        print(f"\n(revision {args.rev}: not written to RESULTS.md)")
        return 0
    body = f"""
Setup: `sidecred sidecar` (web-identity, token mode env) from a wheel installed in a fresh venv
(as a pod runs it: no editable-install finder), against a local `moto_server`. Start to ready
runs from `Popen` to the first `/readyz` 200 (polled every 5 ms): interpreter start, the
server's imports, the listeners, and the first `sidecred fetch` child (interpreter, botocore,
the STS call). Memory is `Rss` and `Anonymous` from `/proc/PID/smaps_rollup` after
{args.requests:,} keep-alive `GET /v1/credentials`; the baselines run on the same interpreter
in the same run. The refresh peak samples the serving process plus its children every
{SAMPLE_EVERY_S * 1000:g} ms over {REFRESHES_SAMPLED} refreshes (moto behind a proxy that
shortens sessions to 20 s).

{table}

{summary}

What the split costs: `sidecred fetch` alone takes {fetch_s:.3f} s (median of {args.runs}), and
start to ready is {ready:.3f} s; in exchange the serving process holds
{steady["Rss"] - bare_server["Rss"]:+.1f} MB RSS / {steady["Anonymous"] - bare_server["Anonymous"]:+.1f} MB
anonymous against the bare asyncio server, and botocore's memory is paid only while a fetch runs.
"""
    support.write_section("footprint", "2. Footprint", "python3 bench/footprint.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
