"""Benchmark 2: the sidecar's footprint, multiplied by every pod that runs one.

Starts a real `sidecred sidecar` against a local moto STS N times and measures
the time from process start to `/readyz` 200 (credentials held), the resident
memory once ready, and the growth after 10,000 credential requests. Baselines
measured in the same run: a bare `python3 -c` process, and one that imports
botocore and creates an STS client (the least a Python sidecar calling STS
needs), both for RSS and for start-up time.

Targets: RSS <= 45 MB; ready <= 1.0 s (median).

    python3 bench/footprint.py [--runs 5] [--requests 10000]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.sidecar.config import CREDENTIALS_PATH

RSS_TARGET_MB = 45.0
READY_TARGET_S = 1.0

BASELINES = {
    "bare python3 -c": "import sys",
    "python3 -c: import botocore.session; create STS client": (
        "import botocore.session\n"
        "botocore.session.get_session().create_client('sts', region_name='us-east-1')"
    ),
}


def baseline(code: str) -> tuple[float, float]:
    """(seconds until the code has run, RSS MB then) for `python3 -c code` kept alive on stdin."""
    script = code + "\nimport sys\nprint('ok', flush=True)\nsys.stdin.read()\n"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ok":
            raise RuntimeError(f"baseline failed: {code}")
        elapsed = time.monotonic() - started
        rss = support.rss_kib(process.pid) / 1024
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    return elapsed, rss


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()

    base_rows = []
    base_times: dict[str, float] = {}
    for name, code in BASELINES.items():
        samples = [baseline(code) for _ in range(args.runs)]
        elapsed = support.median([s[0] for s in samples])
        rss = support.median([s[1] for s in samples])
        base_times[name] = elapsed
        base_rows.append((name, elapsed, rss))
        print(f"{name:58} start {elapsed:.3f} s  RSS {rss:.1f} MB")

    moto = support.start_moto()
    ready_times: list[float] = []
    ready_rss: list[float] = []
    try:
        for run in range(args.runs):
            work = support.workdir(f"footprint-{run}")
            env = support.sidecar_env(work, moto.url)
            started = time.monotonic()
            sidecar = support.start_sidecar(env, work)
            try:
                sidecar.wait_ready(interval=0.005)
                ready_times.append(time.monotonic() - started)
                ready_rss.append(support.rss_kib(sidecar.process.pid) / 1024)
                if run == args.runs - 1:
                    hammer(sidecar.port, sidecar.token(), args.requests)
                    after_rss = support.rss_kib(sidecar.process.pid) / 1024
            finally:
                sidecar.stop()
            print(
                f"sidecar run {run + 1}: ready {ready_times[-1]:.3f} s  RSS {ready_rss[-1]:.1f} MB"
            )
    finally:
        moto.stop()

    ready_median = support.median(ready_times)
    rss_median = support.median(ready_rss)
    growth = after_rss - ready_rss[-1]
    botocore_name = list(BASELINES)[1]
    botocore_rss = base_rows[1][2]
    bare_rss = base_rows[0][2]
    rows = [
        [name, f"{elapsed:.3f}", f"{rss:.1f}", f"{rss_median - rss:+.1f}"]
        for name, elapsed, rss in base_rows
    ]
    rows.append(
        [
            "**sidecred sidecar** (ready: credentials held)",
            f"{ready_median:.3f}",
            f"{rss_median:.1f}",
            "",
        ]
    )
    rows.append(
        [
            f"sidecred sidecar after {args.requests:,} requests",
            "",
            f"{after_rss:.1f}",
            f"growth {growth:+.2f}",
        ]
    )
    table = support.markdown_table(
        ["process", "start to ready s (median)", "RSS MB (median)", "sidecar minus this"], rows
    )
    summary = support.markdown_table(
        ["target", "measured", "result"],
        [
            [
                f"RSS <= {RSS_TARGET_MB:g} MB",
                f"{rss_median:.1f} MB ({after_rss:.1f} MB after load)",
                support.verdict(max(rss_median, after_rss) <= RSS_TARGET_MB),
            ],
            [
                f"ready <= {READY_TARGET_S:g} s (median of {args.runs})",
                f"{ready_median:.3f} s (min {min(ready_times):.3f}, max {max(ready_times):.3f})",
                support.verdict(ready_median <= READY_TARGET_S),
            ],
        ],
    )
    print("\n" + table + "\n\n" + summary)
    body = f"""
Setup: `sidecred sidecar` (web-identity, token mode env) against a local `moto_server`, started
{args.runs} times; "start to ready" runs from `Popen` to the first `/readyz` 200 (polled every 5 ms), so
it includes interpreter start, imports, the STS call to moto and the listeners. RSS is `VmRSS` from
`/proc/PID/status` once ready; growth is measured after {args.requests:,} keep-alive
`GET /v1/credentials` requests on the last run. Baselines in the same run: `python3 -c` processes
kept alive on stdin (start = until their code has run).

{table}

{summary}

Against the baselines: the sidecar holds {rss_median - bare_rss:.1f} MB more than bare CPython and
{rss_median - botocore_rss:+.1f} MB against `{botocore_name}`, i.e. almost all of its memory is the
interpreter plus botocore's STS client; its start-up is {ready_median / base_times[botocore_name]:.2f}x
that baseline's import-and-create time.
"""
    support.write_section("footprint", "2. Footprint", "python3 bench/footprint.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
