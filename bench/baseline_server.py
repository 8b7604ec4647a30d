"""The baseline for bench/endpoint.py: a minimal asyncio server returning fixed bytes.

It reads each request head and writes back one pre-rendered response (the
same bytes the sidecar sends), with keep-alive and nothing else: no parsing,
no limits, no auth. It is the floor that any asyncio HTTP server on this
Python could reach.

    python3 bench/baseline_server.py PORT RESPONSE_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


async def serve(port: int, response: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, response_file = int(sys.argv[1]), Path(sys.argv[2])
    asyncio.run(serve(port, response_file.read_bytes()))


if __name__ == "__main__":
    main()
