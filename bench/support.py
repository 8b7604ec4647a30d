"""Shared benchmark plumbing: machine facts, RESULTS.md sections, wrk, processes, sidecars.

Benchmarks report numbers; they are not pass/fail tests. Every server under
test runs in its own process, every load generator in another, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

# Re-exported: the benchmarks use these as support.free_port, support.http_get, ...
from sidecred.dev.processes import free_port, stop_process, wait_until
from tests.sidecar.sidecar_process import SidecarProcess, http_get

if TYPE_CHECKING:  # at run time imported where used: the module imports pytest
    from tests.support.sts import MotoServer

__all__ = ["SidecarProcess", "free_port", "http_get", "stop_process", "wait_until"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
MOTO_REGION = "us-east-1"
MOTO_ACCOUNT_ID = "123456789012"
ROLE_ARN = f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/bench-reader"

# Two cores: pin the server under test to one and the load generator to the
# other, so neither steals the other's CPU and runs are comparable.
SERVER_CPU = "0"
LOADGEN_CPU = "1"


# --- command line ----------------------------------------------------------------
def options(doc: str, script: str, **defaults: float | tuple[float, str]) -> argparse.Namespace:
    """Parse a benchmark's numeric options: `rate_seconds=10.0` is `--rate-seconds`, typed by
    its default, or `(default, help)`. The description is `doc`'s first paragraph.

    The result's `command` is the command line to record with the results: `script` with
    the options that differ from their defaults, so a shortened run says it was one.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    plain: dict[str, float] = {}
    for name, spec in defaults.items():
        default, help_text = spec if isinstance(spec, tuple) else (spec, None)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=help_text)
        plain[name] = default
    args = parser.parse_args()
    words = [f"python3 bench/{Path(script).name}"]
    for name, default in plain.items():
        value = getattr(args, name)
        if value != default:
            words.append(f"--{name.replace('_', '-')} {value:g}")
    args.command = " ".join(words)
    return args


# --- machine and report ----------------------------------------------------------
def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count() or 0),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def machine_line() -> str:
    m = machine()
    one, five, _ = os.getloadavg()
    return (
        f"Machine: nproc={m['nproc']}, CPU {m['cpu']}, Python {m['python']}, Linux {m['kernel']}; "
        f"load average {one:.1f} (1 min) / {five:.1f} (5 min) when written (a shared machine: "
        "latency percentiles move with it, CPU per request much less)."
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, command: str, body: str) -> None:
    """Replace (or append) this benchmark's section of bench/RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"Command: `{command}` ({stamp}).\n{machine_line()}\n\n{body.strip()}\n"
        f"<!-- /bench:{name} -->"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text if text.endswith("\n") else text + "\n")
    print(f"\nwrote the {name!r} section of {RESULTS.relative_to(REPO)}")


def publish(name: str, title: str, command: str, setup: str, table: str, verdicts: str) -> None:
    """Print a benchmark's table and target verdicts, and write them below `setup` as its
    section of bench/RESULTS.md."""
    print("\n" + table + "\n\n" + verdicts)
    write_section(name, title, command, f"{setup.strip()}\n\n{table}\n\n{verdicts}")


def targets_table(rows: Sequence[Sequence[object]]) -> str:
    """The closing table of a benchmark: (target, measured, met) rows, met shown as a verdict."""
    return markdown_table(
        ["target", "measured", "result"], [(t, m, verdict(bool(ok))) for t, m, ok in rows]
    )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0-100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- processes ---------------------------------------------------------------------
def pinned(cmd: list[str], cpu: str) -> list[str]:
    """`cmd` under taskset when there are at least two CPUs to separate."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *cmd]
    return cmd


def memory_mib(pid: int) -> dict[str, float]:
    """`Rss`, `Pss` (shared pages divided among their users) and `Anonymous` (unshared,
    per-pod memory) of `pid` in MiB, from smaps_rollup."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        if name in ("Rss", "Pss", "Anonymous"):
            found[name] = int(value.split()[0]) / 1024
    return found


def children(pid: int) -> list[int]:
    """The direct children of `pid` (e.g. a sidecar's `sidecred fetch`)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def installed_python(work: Path, rev: str | None = None, base: str | None = None) -> Path:
    """A Python with sidecred installed from a wheel (of the checkout, or of git `rev`).

    The checkout's editable install loads its own finder (pathlib, urllib,
    ipaddress...) into every process; a pod runs a regular install, so memory
    is measured on one. The venv is made from `base` (default: this
    interpreter), e.g. Debian's /usr/bin/python3, which the sidecar image
    ships. Dependencies come from this venv's site-packages, added as a plain
    path (its .pth files are not run); they must suit `base`'s minor version.
    """
    source = REPO
    if rev is not None:
        source = work / "source"
        source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    wheels = work / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        cwd=work,
    )
    venv = work / "venv"
    subprocess.run([base or sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(["unzip", "-q", str(wheel), "-d", site], check=True)
    deps = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "sidecred-bench-deps.pth").write_text(deps + "\n")
    return python


class Sampler:
    """Calls `sample()` every `interval` seconds in a daemon thread, from `with` to its end."""

    interval = 0.1

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError


class RssSampler(Sampler):
    """The peak VmRSS of a process in KiB, sampled every 50 ms."""

    interval = 0.05

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid, self.peak_kib = pid, 0

    def sample(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # the process may be gone
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- STS emulator ----------------------------------------------------------------------
def start_moto() -> MotoServer:
    """moto_server on a free loopback port, plus the role the sidecars assume."""
    from tests.support.sts import create_role
    from tests.support.sts import start_moto as start

    server = start()
    create_role(server.url, ROLE_ARN.rsplit("/", 1)[1])
    return server


# --- sidecar -----------------------------------------------------------------------------
def sidecar_env(workdir: Path, sts_url: str) -> dict[str, str]:
    """The env the webhook writes for a web-identity sidecar in token mode env, resolved.

    From the webhook's own patch and the local pod runner (volumes under
    `workdir`), plus the surroundings: PATH, the checkout and the STS emulator.
    """
    from tests.support.injected_sidecar import local_config
    from tests.support.injected_sidecar import sidecar_env as injected_env

    config = local_config(token_mode="env")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        "AWS_ENDPOINT_URL_STS": sts_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
    }
    return injected_env(workdir / "pod", ROLE_ARN, config, environment)


def start_sidecar(
    env: dict[str, str], workdir: Path, cpu: str | None = None, python: Path | None = None
) -> SidecarProcess:
    cmd = [str(python or sys.executable), "-m", "sidecred.cli", "sidecar"]
    log_path = workdir / "sidecar.log"
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen(
            pinned(cmd, cpu) if cpu else cmd,
            env=env,
            # An installed Python must not pick up the checkout from its cwd.
            cwd=REPO if python is None else workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    return SidecarProcess(process, env, log_path)


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sidecred-bench-{prefix}-"))


# --- wrk -------------------------------------------------------------------------------------
_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"socket_errors\\":%d,\\"non2xx\\":%d," ..
    "\\"p50_us\\":%.1f,\\"p90_us\\":%.1f,\\"p99_us\\":%.1f,\\"max_us\\":%.1f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    requests: int
    seconds: float
    socket_errors: int
    non2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_seconds: float = float("nan")  # CPU the server process used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU per request: unlike req/s, barely moved by noisy neighbours."""
        return self.server_cpu_seconds / self.requests * 1e6 if self.requests else float("nan")


def comparison_rows(
    results: Mapping[tuple[str, Any], LoadResult],
    subject: str,
    concurrency: Sequence[int],
    percentiles: Sequence[str],
    digits: int,
) -> list[list[object]]:
    """Rows of `subject` and the baseline at each concurrency: server, concurrency, req/s,
    the `percentiles` (LoadResult field names) in ms, CPU us/req, errors, req/s vs baseline."""
    rows: list[list[object]] = []
    for connections in concurrency:
        ours, base = results[subject, connections], results["baseline", connections]
        for name, r in ((subject, ours), ("baseline", base)):
            latencies = [f"{getattr(r, p):.{digits}f}" for p in percentiles]
            rows.append(
                [
                    name,
                    connections,
                    f"{r.rps:,.0f}",
                    *latencies,
                    f"{r.cpu_us_per_request:.0f}",
                    r.socket_errors + r.non2xx,
                    f"{ours.rps / base.rps:.0%}" if name == subject else "100%",
                ]
            )
    return rows


def wrk_script(
    path: Path, *, method: str = "GET", headers: dict[str, str] | None = None, body: str = ""
) -> Path:
    """A wrk Lua script sending one fixed request and printing a JSON summary."""
    lines = [f"wrk.method = {json.dumps(method)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if body:
        lines.append(f"wrk.body = {json.dumps(body)}")
    path.write_text("\n".join(lines) + "\n" + _WRK_DONE)
    return path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, script: Path, connections: int, seconds: float, server_pid: int | None = None
) -> LoadResult:
    """Closed-loop load with wrk (one thread, pinned to the load generator's CPU)."""
    cpu_before = cpu_seconds(server_pid) if server_pid else float("nan")
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        pinned(cmd, LOADGEN_CPU), capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    server_cpu = cpu_seconds(server_pid) - cpu_before if server_pid else float("nan")
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            return LoadResult(
                connections=connections,
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                socket_errors=data["socket_errors"],
                non2xx=data["non2xx"],
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                server_cpu_seconds=server_cpu,
            )
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
