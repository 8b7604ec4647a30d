"""Benchmark 2: the sidecar's footprint, multiplied by every pod that runs one.

This revision and a previous one (`--before`, default `main`), each built into a
wheel and installed on the interpreter the sidecar image ships (Debian's
python3, `--python`), measured the same way in one run against a local moto STS:

- start to ready: process start until `/readyz` 200 (credentials held), median;
- steady memory after 10,000 credential requests: RSS, PSS and anonymous memory
  (the unshared part each pod pays), from /proc/PID/smaps_rollup;
- the process tree while refreshing: credentials of 16 minutes (moto behind a
  proxy that rewrites `Expiration`) force a refresh about every 20-30 s; the
  serving process plus its `sidecred fetch` child are sampled every 2 ms over
  several refreshes. RSS summed counts the interpreter's shared pages once per
  process; PSS summed counts them once. Meanwhile an app polls the endpoint and
  every credential served must have more than 15 minutes left;
- with `--images`: the sidecar image of both revisions, built with podman from
  the Debian base `scripts/image` bootstraps, layer by layer.

Targets (this revision): steady <= 15 MB RSS and <= 6 MB anonymous; the tree
<= 30 MB while refreshing; ready <= 0.3 s; the sidecar image <= 60 MB.

    python3 bench/footprint.py [--before REV] [--python /usr/bin/python3] [--images]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.dev.processes import wait_until
from sidecred.sidecar.config import CREDENTIALS_PATH
from tests.sidecar.sidecar_process import SidecarProcess, http_get

STEADY_RSS_TARGET = 15.0
STEADY_ANON_TARGET = 6.0
TREE_TARGET = 30.0
READY_TARGET_S = 0.3
IMAGE_TARGET_MB = 60.0
SESSION_SECONDS = 16 * 60  # 16 minutes: the sidecar must refresh within a minute, every time
REFRESHES_SAMPLED = 4
SAMPLE_EVERY_S = 0.002
SDK_THRESHOLD = timedelta(minutes=15)
DEBIAN_PYTHON = "/usr/bin/python3"


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


def installed_env(work: Path, sts_url: str) -> dict[str, str]:
    env = support.sidecar_env(work, sts_url)
    del env["PYTHONPATH"]  # the installed package, not the checkout
    return env


def ready_runs(python: Path, sts_url: str, runs: int) -> tuple[list[float], SidecarProcess]:
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
    return times, sidecar


@dataclass
class TreePeak:
    rss: float = 0.0  # server + children, RSS summed
    pss: float = 0.0  # the same, PSS summed
    child_rss: float = 0.0
    server_rss: float = 0.0
    refreshes: int = 0
    served: int = 0  # credential answers checked while refreshing
    shortest_left: timedelta = timedelta.max  # the least time left on any of them


class Poller(threading.Thread):
    """An app asking for credentials every 50 ms; notes the least time left it was served."""

    def __init__(self, sidecar: SidecarProcess, peak: TreePeak) -> None:
        super().__init__(daemon=True)
        self.sidecar, self.peak, self.stop = sidecar, peak, threading.Event()

    def run(self) -> None:
        token = self.sidecar.token()
        while not self.stop.wait(0.05):  # the app's polling interval
            status, body = http_get(self.sidecar.credentials_url, {"Authorization": token})
            if status != 200:
                continue
            expiration = json.loads(body)["Expiration"]
            left = datetime.fromisoformat(expiration.replace("Z", "+00:00")) - datetime.now(UTC)
            self.peak.served += 1
            self.peak.shortest_left = min(self.peak.shortest_left, left)


def tree_peak(python: Path, moto_url: str) -> TreePeak:
    """The serving process plus its fetch children over REFRESHES_SAMPLED refreshes."""
    from tests.support.sts_fault_proxy import StsFaultProxy

    proxy = StsFaultProxy(moto_url)
    proxy.expires_in = SESSION_SECONDS
    work = support.workdir("footprint-peak")
    sidecar = support.start_sidecar(installed_env(work, proxy.url), work, python=python)
    peak = TreePeak()
    poller = Poller(sidecar, peak)
    try:
        sidecar.wait_ready()
        poller.start()
        deadline = time.monotonic() + 60 * (REFRESHES_SAMPLED + 1)
        while len(proxy.calls) < REFRESHES_SAMPLED + 1 and time.monotonic() < deadline:
            server = support.memory_mib(sidecar.process.pid)
            rss, pss, kids = server["Rss"], server["Pss"], 0.0
            for pid in support.children(sidecar.process.pid):
                try:
                    child = support.memory_mib(pid)
                except (OSError, KeyError):
                    continue  # the child exited between listing and reading
                rss, pss, kids = rss + child["Rss"], pss + child["Pss"], kids + child["Rss"]
            peak.rss, peak.pss = max(peak.rss, rss), max(peak.pss, pss)
            peak.child_rss = max(peak.child_rss, kids)
            peak.server_rss = max(peak.server_rss, server["Rss"])
            time.sleep(SAMPLE_EVERY_S)  # sampling interval of a memory probe
        peak.refreshes = len(proxy.calls) - 1
    finally:
        poller.stop.set()
        poller.join(10)
        sidecar.stop()
        proxy.close()
    return peak


@dataclass
class Measured:
    """One revision's figures (MB and seconds)."""

    rev: str
    ready_times: list[float]
    steady: dict[str, float]
    tree: TreePeak
    bare_server: dict[str, float]
    bare: dict[str, float]
    image: list[tuple[str, float]] = field(default_factory=list)  # (layer, MB)

    @property
    def ready(self) -> float:
        return support.median(self.ready_times)

    @property
    def image_mb(self) -> float:
        return sum(size for _, size in self.image)


def measure(
    rev: str | None, label: str, python: str, moto_url: str, args: argparse.Namespace
) -> Measured:
    """Every figure for the checkout (`rev` None) or a git revision, from its installed wheel."""
    installed = support.installed_python(support.workdir("footprint-install"), rev, base=python)
    ready_times, sidecar = ready_runs(installed, moto_url, args.runs)
    try:
        token = sidecar.token()
        response = credentials_response(sidecar.port, token)
        hammer(sidecar.port, token, args.requests)
        steady = support.memory_mib(sidecar.process.pid)
    finally:
        sidecar.stop()
    bare_server = bare_asyncio_server(installed, response, args.requests, support.workdir("base"))
    tree = tree_peak(installed, moto_url)
    image = image_layers(rev, args.base_image) if args.images else []
    return Measured(label, ready_times, steady, tree, bare_server, bare_python(installed), image)


# --- images ------------------------------------------------------------------------------
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def base_image() -> str:
    """The newest Debian base scripts/image bootstrapped (run it once first)."""
    out = subprocess.run(
        [*PODMAN, "images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/sidecred-base"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not out:
        raise SystemExit("no localhost/sidecred-base image: run bash scripts/image once first")
    return out[0]


def image_layers(rev: str | None, base: str) -> list[tuple[str, float]]:
    """Build the `sidecar` target of `rev` (None: the checkout) and list its layers' sizes."""
    context = support.REPO
    if rev is not None:
        context = support.workdir("footprint-image") / "source"
        context.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(support.REPO), "archive", rev], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(context)], input=archive, check=True)
    tag = f"localhost/sidecred-bench-sidecar:{(rev or 'checkout').replace('/', '-')}"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 32768)
    subprocess.run(
        [*PODMAN, "build", "--quiet", "--network", "host",
         f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}",
         "--volume", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
         "--build-arg", f"BASE_IMAGE={base}", "--target", "sidecar", "--tag", tag, str(context)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    history = json.loads(
        subprocess.run(
            [*PODMAN, "history", "--format", "json", tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    layers = []
    for entry in reversed(history):  # oldest first
        size = float(entry.get("size") or 0) / 1e6
        if size > 0:
            created_by = " ".join(
                str(entry.get("CreatedBy") or entry.get("createdBy") or "").split()
            )
            layers.append((created_by.removeprefix("/bin/sh -c ")[:90], size))
    return layers


# --- the report ----------------------------------------------------------------------------
def ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}" if before else ""


def tables(after: Measured, before: Measured, requests: int) -> str:
    rows = [
        [
            "bare `python -c` (same interpreter)",
            f"{after.bare['Rss']:.1f}",
            "",
            f"{after.bare['Anonymous']:.1f}",
            "",
            "",
        ],
        [
            f"bare asyncio server, after {requests:,} requests",
            f"{after.bare_server['Rss']:.1f}",
            "",
            f"{after.bare_server['Anonymous']:.1f}",
            "",
            "",
        ],
    ]
    for m in (before, after):
        rows.append([
            f"sidecred sidecar {m.rev}: credentials held, after {requests:,} requests",
            f"{m.steady['Rss']:.1f}", f"{m.steady['Pss']:.1f}", f"{m.steady['Anonymous']:.1f}",
            f"{m.ready:.3f}", "",
        ])  # fmt: skip
        rows.append([
            f"sidecred sidecar {m.rev}: tree while refreshing ({m.tree.refreshes} refreshes; "
            f"server {m.tree.server_rss:.1f}, fetch child {m.tree.child_rss:.1f} RSS)",
            f"{m.tree.rss:.1f}", f"{m.tree.pss:.1f}", "", "",
            f"{m.tree.shortest_left.total_seconds() / 60:.1f} min ({m.tree.served} answers)",
        ])  # fmt: skip
    memory = support.markdown_table(
        ["process", "RSS MB", "PSS MB", "anonymous MB", "start to ready s (median)",
         "least time left served"],
        rows,
    )  # fmt: skip
    ratios = support.markdown_table(
        ["after / before", "ratio"],
        [
            ["steady RSS", ratio(after.steady["Rss"], before.steady["Rss"])],
            ["steady anonymous", ratio(after.steady["Anonymous"], before.steady["Anonymous"])],
            ["tree while refreshing, RSS summed", ratio(after.tree.rss, before.tree.rss)],
            ["tree while refreshing, PSS summed", ratio(after.tree.pss, before.tree.pss)],
            ["start to ready", ratio(after.ready, before.ready)],
            *([["sidecar image", ratio(after.image_mb, before.image_mb)]] if after.image else []),
        ],
    )
    parts = [memory, ratios]
    for m in (before, after):
        if m.image:
            layer_rows = [[name, f"{size:.1f}"] for name, size in m.image]
            layer_rows.append(["**total**", f"**{m.image_mb:.1f}**"])
            parts.append(f"Sidecar image, {m.rev}, by layer:\n\n"
                         + support.markdown_table(["layer", "MB"], layer_rows))  # fmt: skip
    return "\n\n".join([*parts, support.targets_table(target_checks(after))])


def target_checks(after: Measured) -> list[tuple[str, str, bool]]:
    """This revision's figures against the targets."""
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
            f"tree while refreshing <= {TREE_TARGET:g} MB (RSS summed)",
            f"{after.tree.rss:.1f} MB (PSS summed {after.tree.pss:.1f})",
            after.tree.rss <= TREE_TARGET,
        ),
        (
            f"start to ready <= {READY_TARGET_S:g} s (median of {len(after.ready_times)})",
            f"{after.ready:.3f} s (min {min(after.ready_times):.3f}, max {max(after.ready_times):.3f})",
            after.ready <= READY_TARGET_S,
        ),
        (
            "no credential served with 15 min or less left",
            f"least {after.tree.shortest_left.total_seconds() / 60:.1f} min over {after.tree.served} answers",
            after.tree.shortest_left > SDK_THRESHOLD,
        ),
    ]
    if after.image:
        checks.append((f"sidecar image <= {IMAGE_TARGET_MB:g} MB", f"{after.image_mb:.1f} MB", after.image_mb <= IMAGE_TARGET_MB))  # fmt: skip
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--before", default="main", help="the revision to compare with (git)")
    parser.add_argument("--python", default=DEBIAN_PYTHON, help="the interpreter to install on")
    parser.add_argument("--images", action="store_true", help="also build and size both images")
    args = parser.parse_args()
    args.base_image = base_image() if args.images else ""
    before_rev = subprocess.run(
        ["git", "-C", str(support.REPO), "rev-parse", "--short", args.before],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    version = subprocess.run(
        [args.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    moto = support.start_moto()
    try:
        before = measure(before_rev, f"before ({before_rev})", args.python, moto.url, args)
        after = measure(None, "**after**", args.python, moto.url, args)
    finally:
        moto.stop()
    text = tables(after, before, args.requests)
    print("\n" + text)
    command = f"python3 bench/footprint.py --before {args.before}" + (
        " --images" if args.images else ""
    )
    body = f"""
Setup: `sidecred sidecar` (web-identity, token mode env, its env from the webhook's own patch)
from a wheel installed on {args.python} (Python {version}, the interpreter the sidecar image ships;
no editable-install finder), against a local `moto_server`. "Before" is revision `{before_rev}`
built and measured the same way in the same run. Start to ready runs from `Popen` to the first
`/readyz` 200 (polled every 5 ms): interpreter start, the server's imports, the listeners and the
first `sidecred fetch` child. Steady memory is read from `/proc/PID/smaps_rollup` after
{args.requests:,} keep-alive `GET /v1/credentials`. The tree while refreshing samples the serving
process plus its children every {SAMPLE_EVERY_S * 1000:g} ms while moto (behind a proxy that
rewrites `Expiration`) issues {SESSION_SECONDS // 60}-minute credentials, so that each refresh
comes about 15-30 s after the last; an app polls the endpoint every 50 ms meanwhile, and the
least time left on what it was served is shown. RSS summed counts the interpreter's shared
pages once per process; PSS summed counts them once (closer to what the pod's memory cgroup is
charged). The machine is shared (2 cores, other engineers' jobs): start-up times vary with its
load, memory does not.

{text}
"""
    support.write_section("footprint", "2. Footprint", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
