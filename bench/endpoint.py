"""Benchmark 1: the sidecar's credential endpoint under load.

A real `sidecred sidecar` process holds credentials from a local moto STS;
wrk (a separate process, pinned to the other CPU) sends `GET /v1/credentials`
with the valid token at concurrency 1, 10 and 100. The baseline, measured in
the same run with the same load, is a minimal asyncio server returning the
very bytes the sidecar returns (bench/baseline_server.py).

Targets: p99 <= 2 ms at concurrency 10; throughput >= 50% of the baseline.

    python3 bench/endpoint.py [--seconds 5]
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.dev.processes import wait_until
from sidecred.sidecar.config import CREDENTIALS_PATH

CONCURRENCY = (1, 10, 100)
P99_TARGET_MS = 2.0
THROUGHPUT_TARGET = 0.5


def raw_response(port: int, token: str) -> bytes:
    """The exact bytes the sidecar answers a valid request with (head and body)."""
    request = (
        f"GET {CREDENTIALS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: {token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"sidecar did not answer 200: {head[:80]!r}")
    return head + b"\r\n\r\n" + body


def start_baseline(port: int, response_file: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("baseline_server.py")),
        str(port),
        str(response_file),
    ]
    process = subprocess.Popen(support.pinned(cmd, support.SERVER_CPU))
    wait_until(
        lambda: support.http_get(f"http://127.0.0.1:{port}/")[0] == 200, 10, "baseline server"
    )
    return process


def main() -> int:
    args = support.options(__doc__, __file__, seconds=(5.0, "load duration per level"))

    work = support.workdir("endpoint")
    moto = support.start_moto()
    sidecar = baseline = None
    try:
        sidecar = support.start_sidecar(
            support.sidecar_env(work, moto.url), work, cpu=support.SERVER_CPU
        )
        sidecar.wait_ready()
        token = sidecar.token()
        response = raw_response(sidecar.port, token)
        response_file = work / "response.bin"
        response_file.write_bytes(response)
        baseline_port = support.free_port()
        baseline = start_baseline(baseline_port, response_file)

        script = support.wrk_script(work / "get.lua", headers={"Authorization": token})
        targets = {
            "sidecar": (sidecar.credentials_url, sidecar.process.pid),
            "baseline": (f"http://127.0.0.1:{baseline_port}{CREDENTIALS_PATH}", baseline.pid),
        }
        for url, _ in targets.values():  # warm up both (first connections, code paths)
            support.run_wrk(url, script, 10, 1)
        results: dict[tuple[str, int], support.LoadResult] = {}
        for connections in CONCURRENCY:
            for name, (url, pid) in targets.items():
                result = support.run_wrk(url, script, connections, args.seconds, pid)
                results[name, connections] = result
                print(
                    f"{name:8} c={connections:<3} {result.rps:9.0f} req/s  p50 {result.p50_ms:.3f} ms"
                    f"  p99 {result.p99_ms:.3f} ms  cpu {result.cpu_us_per_request:.0f} us/req  errors {result.socket_errors + result.non2xx}"
                )
    finally:
        if baseline is not None:
            support.stop_process(baseline)
        if sidecar is not None:
            sidecar.stop()
        moto.stop()

    percentiles = ("p50_ms", "p90_ms", "p99_ms")
    rows = support.comparison_rows(results, "sidecar", CONCURRENCY, percentiles, 3)
    table = support.markdown_table(
        [
            "server",
            "concurrency",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "server CPU us/req",
            "errors",
            "req/s vs baseline",
        ],
        rows,
    )
    p99_c10 = results["sidecar", 10].p99_ms
    worst_ratio = min(results["sidecar", c].rps / results["baseline", c].rps for c in CONCURRENCY)
    summary = support.targets_table(
        [
            [
                f"p99 <= {P99_TARGET_MS} ms at concurrency 10",
                f"{p99_c10:.3f} ms",
                p99_c10 <= P99_TARGET_MS,
            ],
            [
                f"throughput >= {THROUGHPUT_TARGET:.0%} of baseline (worst level)",
                f"{worst_ratio:.0%}",
                worst_ratio >= THROUGHPUT_TARGET,
            ],
        ],
    )
    setup = f"""
Setup: a real `sidecred sidecar` (web-identity, token mode env) holding credentials from a local
`moto_server`; `wrk -t1 -cN -d{args.seconds:g}s` with a Lua script setting `Authorization`, against
`GET /v1/credentials` (every answer a 200 with the {len(response)}-byte credentials response).
Baseline in the same run: `bench/baseline_server.py`, a minimal asyncio server returning the same
bytes (no parsing, no auth, no limits). Server pinned to CPU {support.SERVER_CPU}, wrk to CPU {support.LOADGEN_CPU}.
"""
    support.publish("endpoint", "1. Credential endpoint", args.command, setup, table, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
