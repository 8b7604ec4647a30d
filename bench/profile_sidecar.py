"""Profile the sidecar's credential hot path under wrk load with py-spy (evidence for optimising).

Starts moto and a real sidecar, drives `GET /v1/credentials` with wrk, samples
the sidecar with `py-spy record` (pip install py-spy) and prints the functions
holding the most samples, by own time and by inclusive time.

    python3 bench/profile_sidecar.py [--connections 100] [--seconds 8]
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support


def summarise(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    args = support.options(__doc__, __file__, connections=100, seconds=8.0, top=25)
    work = support.workdir("profile")
    moto = support.start_moto()
    sidecar = None
    try:
        sidecar = support.start_sidecar(
            support.sidecar_env(work, moto.url), work, cpu=support.SERVER_CPU
        )
        sidecar.wait_ready()
        script = support.wrk_script(work / "get.lua", headers={"Authorization": sidecar.token()})
        out = work / "profile.collapsed"
        spy = subprocess.Popen(
            [
                *("py-spy", "record", "--format", "raw", "--rate", "500"),
                *("--pid", str(sidecar.process.pid), "--duration", f"{args.seconds - 1:g}"),
                *("--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load = threading.Thread(
            target=support.run_wrk,
            args=(sidecar.credentials_url, script, args.connections, args.seconds),
        )
        load.start()
        spy.wait(timeout=args.seconds + 30)
        load.join()
        print(summarise(out, args.top))
        print(f"\ncollapsed stacks: {out}")
    finally:
        if sidecar is not None:
            sidecar.stop()
        moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
