"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the schedule.

Requests are due at start + i/rate whether or not earlier ones have answered,
and each latency runs from its due time (not its send time) to the end of its
response, so a stalled server shows up in the percentiles instead of quietly
lowering the rate (no coordinated omission). Connections are kept alive and
reused; a new one opens when all are busy. Prints one JSON line.

    python3 bench/open_loop.py URL --rate 200 --seconds 10 [--body FILE] [--cafile F --server-name N]
        [--stop-file F]   (stop sending once F exists: a run as long as another's)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    context = None
    if url.scheme == "https":
        context = ssl.create_default_context(cafile=args.cafile)
    body = Path(args.body).read_bytes() if args.body else b""
    method = "POST" if body else "GET"
    request = (
        f"{method} {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    idle: list[Connection] = []

    async def connect() -> Connection:
        reader, writer = await asyncio.open_connection(
            url.hostname,
            url.port,
            ssl=context,
            server_hostname=args.server_name if context else None,
        )
        return Connection(reader, writer)

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        reused = bool(idle)
        conn = idle.pop() if idle else await connect()
        try:
            try:
                status = await conn.exchange(request)
            except asyncio.IncompleteReadError as exc:
                if not (reused and not exc.partial):
                    raise
                # The server closed this kept-alive connection before any answer (its idle
                # timeout): sent again on a new one, as Go's HTTP client (the API server's) does.
                conn.writer.close()
                conn = await connect()
                status = await conn.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn.writer.close()
            return
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    for _ in range(4):  # warm connections (TLS handshakes are not what is measured)
        idle.append(await connect())
    total = int(args.rate * args.seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    stop_file = Path(args.stop_file) if args.stop_file else None
    for i in range(total):
        if stop_file is not None and stop_file.exists():
            break
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the schedule, not synchronisation
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "achieved_rate": len(latencies) / elapsed,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--body", help="POST this file's bytes (GET when absent)")
    parser.add_argument("--cafile", help="CA bundle that signs the server's certificate")
    parser.add_argument("--server-name", help="TLS server name to send and verify")
    parser.add_argument("--stop-file", help="stop sending once this file exists")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
