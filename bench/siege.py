"""Benchmark 11: the webhook under siege, each attack of the outside review against its budget.

Any pod can reach the webhook. The outside review knocked it over four ways; this
repeats each against a real `sidecred webhook` process over TLS (pinned to CPU 0;
the attacks, the API stub and the probe on CPU 1), a fresh process per attack,
and measures what the attack costs it:

- stalled: 80 TLS connections each announce a 3 MiB review, send 2.9 MiB and stall;
- names: 1,200 reviews naming distinct 60,000-character namespaces (half in
  request.namespace, half in the pod's metadata.namespace);
- unknown: 600 reviews naming distinct valid namespaces that do not exist;
- huge: four clients send, back to back, 2 MiB reviews of a 10,000-container pod.

Meanwhile an ordinary admission (an annotated pod, permitted) goes out 20 times a
second on kept-alive connections, as the API server sends them (bench/open_loop.py),
and the webhook's RSS is sampled every 50 ms. The baseline is the same process at
rest just before the attack: RSS and the same probe for 3 s. The API stub counts
namespace GETs; the log file's growth is the log cost.

Targets (issue 18): stalled at most +64 MB with every ordinary admission answered
within 2 s; names 0 GETs and at most +30 MB; unknown at most 20 + 10 per second
GETs; huge an ordinary p99 of at most 0.3 s.

    python3 bench/siege.py [--before REV] [--attacks stalled,names,unknown,huge]

With --before, the same attacks also run against revision REV (its source from
`git archive`), side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import io
import json
import os
import resource
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench import support
from bench.admission import BASE_ROLE_ARN, NAMESPACE, POLICY, SERVER_NAME, SERVICE, answers
from sidecred.certs.cli import main as certs_main
from sidecred.dev.kube_stub import KubeApiStub, write_kubeconfig
from sidecred.dev.processes import stop_process, wait_until
from sidecred.webhook.review import (
    GroupVersionKind,
    GroupVersionResource,
    admission_review,
    pod_request,
)
from sidecred.webhook.review import admission_request as raw_request

ATTACKS = ("stalled", "names", "unknown", "huge", "patterns", "connections")
PROBE_RATE = 20.0
BASELINE_SECONDS = 3.0
HUGE_SECONDS = 10.0
MIB = 1024 * 1024


def ordinary_pod(namespace: str = "shop", name: str = "") -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "generateName": "search-84b6c7d5f9-",
        "namespace": namespace,
        "labels": {"app": "search"},
        "annotations": {"iam.amazonaws.com/role": "shop-search"},
    }
    if name:
        metadata["name"] = name
    container = {
        "name": "search",
        "image": "registry.example.com/search:2.0",
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [container]},
    }


def review_bytes(pod: dict[str, Any], namespace: str = "shop") -> bytes:
    return json.dumps(admission_review(pod_request(pod, namespace=namespace))).encode()


def huge_review() -> bytes:
    pod = ordinary_pod()
    template = dict(pod["spec"]["containers"][0])
    template["env"] = [*template["env"], {"name": "REGION", "value": "eu-west-1"}]
    pod["spec"]["containers"] = [dict(copy.deepcopy(template), name=f"c{i}") for i in range(10_000)]
    return review_bytes(pod)


# --- the webhook under test --------------------------------------------------------------
@dataclass
class Target:
    """One webhook process (this checkout, or an older revision's source)."""

    label: str
    source: Path
    work: Path
    cert_dir: Path
    process: subprocess.Popen[bytes] | None = None
    stub: KubeApiStub | None = None
    port: int = 0
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work / f"webhook-{self.label}.log"

    def start(self) -> None:
        self.stub = KubeApiStub()
        self.stub.add_namespace("shop", POLICY)
        self.stub.start()
        kubeconfig = write_kubeconfig(self.work / "kubeconfig.json", self.stub.url)
        self.port = support.free_port()
        command = [
            *(sys.executable, "-m", "sidecred.cli", "webhook"),
            *("--tls-cert", str(self.cert_dir / "tls.crt")),
            *("--tls-key", str(self.cert_dir / "tls.key")),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--kubeconfig", str(kubeconfig), "--base-role-arn", BASE_ROLE_ARN),
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECRED_")}
        env["PYTHONPATH"] = str(self.source)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                support.pinned(command, support.SERVER_CPU),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.source,
                env=env,
            )
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        context.check_hostname = False
        wait_until(lambda: answers(self.url + "/readyz", context), 60, f"{self.label} /readyz")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        if self.stub is not None:
            self.stub.stop()

    def gets(self) -> int:
        assert self.stub is not None
        return self.stub.requests["get"]

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        return httpx.Client(base_url=self.url, verify=context, timeout=30.0)


def probe(
    target: Target, seconds: float, body_file: Path, stop_file: Path | None = None
) -> subprocess.Popen[str]:
    """Ordinary admissions at PROBE_RATE for `seconds` or until `stop_file` exists
    (bench/open_loop.py), started now."""
    command = [
        sys.executable,
        str(Path(__file__).with_name("open_loop.py")),
        target.url + "/mutate",
        *("--rate", f"{PROBE_RATE:g}", "--seconds", f"{seconds:g}", "--body", str(body_file)),
        *("--cafile", str(target.cert_dir / "ca.crt"), "--server-name", SERVER_NAME),
        *(("--stop-file", str(stop_file)) if stop_file else ()),
    ]
    return subprocess.Popen(
        support.pinned(command, support.LOADGEN_CPU),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def post_review(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    """POST an AdmissionReview as the API server does (JSON, the service name as SNI)."""
    return http.post(
        path,
        content=body,
        headers={"Content-Type": "application/json"},
        extensions={"sni_hostname": SERVER_NAME},
    )


def answered(statuses: Counter[str]) -> str:
    return "answers " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))


def probe_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=300)
    if process.returncode != 0:
        raise RuntimeError(f"the probe failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])


# --- the attacks -------------------------------------------------------------------------
async def stall_one(
    target: Target, context: ssl.SSLContext, announced: int = 3 * MIB, sent: int = int(2.9 * MIB)
) -> None:
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", target.port, ssl=context, server_hostname=SERVER_NAME
        )
    except (ConnectionError, ssl.SSLError, TimeoutError):
        return  # closed at once: at the cap
    head = (
        f"POST /mutate HTTP/1.1\r\nHost: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    )
    writer.write(head.encode() + b'{"pad": "' + b"x" * (sent - 9))
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(60):
            while await reader.read(65536):
                pass
    writer.close()


def attack_stalled(target: Target) -> str:
    context = ssl.create_default_context(cafile=str(target.cert_dir / "ca.crt"))

    async def siege() -> None:
        await asyncio.gather(*(stall_one(target, context) for _ in range(80)))

    started = time.monotonic()
    asyncio.run(siege())
    return f"80 stalled bodies, all closed after {time.monotonic() - started:.1f} s"


def attack_connections(target: Target) -> str:
    """1,000 TLS connections, each announcing a small body (64 KiB), sending most of it
    and stalling: the connection cap and the small bodies' share of the budget."""
    context = ssl.create_default_context(cafile=str(target.cert_dir / "ca.crt"))

    async def siege() -> None:
        await asyncio.gather(*(stall_one(target, context, 64 * 1024, 60_000) for _ in range(1000)))

    started = time.monotonic()
    asyncio.run(siege())
    return f"1,000 connections, all closed after {time.monotonic() - started:.1f} s"


def attack_patterns(target: Target) -> str:
    """600 Namespace reviews to /validate, each carrying a distinct 1.5 KB policy pattern
    (not in the review: found while working on it)."""
    kind = GroupVersionKind(group="", version="v1", kind="Namespace")
    resource = GroupVersionResource(group="", version="v1", resource="namespaces")
    statuses: Counter[str] = Counter()
    with target.client() as http:
        for index in range(600):
            pattern = f"(?:x{index})" + "[a-z0-9]{100}" * 120
            namespace = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": f"team-{index}",
                    "annotations": {"iam.amazonaws.com/permitted": pattern},
                },
            }
            request = raw_request(kind=kind, resource=resource, operation="CREATE", obj=namespace)
            response = post_review(
                http, "/validate", json.dumps(admission_review(request)).encode()
            )
            key = str(response.status_code)
            statuses[key] += 1
    return answered(statuses)


def attack_names(target: Target) -> str:
    statuses: Counter[str] = Counter()
    with target.client() as http:
        for index in range(1200):
            name = f"{index:05d}" + "n" * 59_995
            if index % 2:
                body = review_bytes(ordinary_pod(namespace=name), namespace="shop")
            else:
                pod = ordinary_pod()
                del pod["metadata"]["namespace"]
                body = review_bytes(pod, namespace="placeholder").replace(
                    b'"namespace": "placeholder"', json.dumps({"namespace": name})[1:-1].encode()
                )
            response = post_review(http, "/mutate", body)
            key = str(response.status_code)
            if response.status_code == 200:
                key += " allowed" if response.json()["response"]["allowed"] else " denied"
            statuses[key] += 1
    return answered(statuses)


def attack_unknown(target: Target) -> str:
    started = time.monotonic()
    with target.client() as http:
        for index in range(600):
            namespace = f"ghost-{index}"
            body = review_bytes(ordinary_pod(namespace=namespace), namespace=namespace)
            post_review(http, "/mutate", body)
    return f"600 names in {time.monotonic() - started:.1f} s"


def attack_huge(target: Target) -> str:
    senders = [
        subprocess.Popen(
            support.pinned(
                [
                    sys.executable,
                    __file__,
                    "--send-huge",
                    target.url,
                    str(target.cert_dir / "ca.crt"),
                    str(HUGE_SECONDS),
                ],
                support.LOADGEN_CPU,
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    counts: Counter[str] = Counter()
    for sender in senders:
        out, _ = sender.communicate(timeout=HUGE_SECONDS + 120)
        counts.update(json.loads(out.strip().splitlines()[-1]))
    return "huge reviews answered: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def send_huge(url: str, ca: str, seconds: float) -> None:
    """One huge-review client: send, wait for the answer, repeat for `seconds`."""
    body = huge_review()
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(base_url=url, verify=context, timeout=60.0) as http:
        while time.monotonic() < deadline:
            response = post_review(http, "/mutate", body)
            key = str(response.status_code)
            if response.status_code == 200:
                answer = response.json()["response"]
                key += f" {answer.get('status', {}).get('code', 200)}"
            counts[key] += 1
    print(json.dumps(counts))


ATTACK_FUNCTIONS: dict[str, Callable[[Target], str]] = {
    "stalled": attack_stalled,
    "names": attack_names,
    "unknown": attack_unknown,
    "huge": attack_huge,
    "patterns": attack_patterns,
    "connections": attack_connections,
}


# --- one run -----------------------------------------------------------------------------
@dataclass
class Run:
    attack: str
    label: str
    rss0: float = 0.0
    peak: float = 0.0
    gets: int = 0
    log_mb: float = 0.0
    base: dict[str, Any] = field(default_factory=dict)
    during: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    seconds: float = 0.0

    @property
    def growth(self) -> float:
        return self.peak - self.rss0


def run_attack(target: Target, attack: str, body_file: Path) -> Run:
    target.start()
    assert target.process is not None
    try:
        result = Run(attack, target.label)
        result.base = probe_result(probe(target, BASELINE_SECONDS, body_file))
        result.rss0 = support.rss_kib(target.process.pid) / 1024
        gets, log_size = target.gets(), target.log.stat().st_size
        stop_file = target.work / f"stop-{target.label}-{attack}"
        started = time.monotonic()
        with support.RssSampler(target.process.pid) as rss:
            prober = probe(target, 600.0, body_file, stop_file)
            result.outcome = ATTACK_FUNCTIONS[attack](target)
            result.seconds = time.monotonic() - started
            stop_file.touch()  # the probe runs as long as the attack
            result.during = probe_result(prober)
            result.peak = max(rss.peak_kib, support.rss_kib(target.process.pid)) / 1024
        result.gets = target.gets() - gets
        result.log_mb = (target.log.stat().st_size - log_size) / MIB
        return result
    finally:
        target.stop()


# --- report ------------------------------------------------------------------------------
READING = """Reading it: `before` is revision 85efdbc, main before the budgets (the kernel-view part of
the same issue already in). The `connections` burst is the one row still costly: 1,000 new
connections at once are held to 256, so ordinary admissions needing a new connection wait
until a held one has waited 1 s for its request (or are refused: the "not 200"); before,
all 1,000 were served and the process grew more (see the row). The allocator keeps part
of what closed connections freed. Only a NetworkPolicy that keeps other pods away
(`networkPolicy.apiServerCIDRs`) stops a caller from taking connection slots.
"""


def _ms(result: dict[str, Any], key: str) -> str:
    return support.fmt(result[key], 1) if result.get("requests") else "n/a"


def _not_ok(result: dict[str, Any]) -> int:
    statuses = result.get("statuses") or {}
    return int(result.get("errors", 0)) + sum(v for k, v in statuses.items() if str(k) != "200")


def rows_of(runs: list[Run]) -> list[list[object]]:
    return [
        [
            run.attack,
            run.label,
            support.fmt(run.rss0, 1),
            support.fmt(run.peak, 1),
            f"{run.growth:+.1f}",
            run.gets,
            support.fmt(run.log_mb, 2),
            _ms(run.base, "p99_ms"),
            f"{_ms(run.during, 'p50_ms')} / {_ms(run.during, 'p99_ms')} / {_ms(run.during, 'max_ms')}",
            f"{run.during.get('requests', 0)} ({_not_ok(run.during)} not 200)",
            support.fmt(run.seconds, 1),
            run.outcome,
        ]
        for run in runs
    ]


def targets(runs: list[Run]) -> list[tuple[str, str, bool]]:
    after = {run.attack: run for run in runs if run.label == "after"}
    rows = []
    if run := after.get("stalled"):
        rows.append(("stalled: RSS growth <= 64 MB", f"{run.growth:+.1f} MB", run.growth <= 64))
        worst = run.during.get("max_ms", float("inf"))
        rows.append(
            (
                "stalled: every ordinary admission answered within 2 s",
                f"max {worst:.0f} ms, {_not_ok(run.during)} not 200",
                worst <= 2000 and _not_ok(run.during) == 0,
            )
        )
    if run := after.get("names"):
        rows.append(("names: 0 namespace GETs", str(run.gets), run.gets == 0))
        rows.append(("names: RSS growth <= 30 MB", f"{run.growth:+.1f} MB", run.growth <= 30))
    if run := after.get("unknown"):
        allowed = 20 + 10 * run.seconds
        rows.append(
            (
                "unknown: namespace GETs <= 20 + 10/s",
                f"{run.gets} in {run.seconds:.1f} s (bound {allowed:.0f})",
                run.gets <= allowed,
            )
        )
    if run := after.get("huge"):
        p99 = run.during.get("p99_ms", float("inf"))
        rows.append(("huge: ordinary admission p99 <= 300 ms", f"{p99:.0f} ms", p99 <= 300))
    return rows


def report(runs: list[Run], command: str) -> bool:
    table = support.markdown_table(
        [
            "attack",
            "webhook",
            "RSS at rest MB",
            "peak RSS MB",
            "growth MB",
            "namespace GETs",
            "log MB",
            "ordinary p99 at rest ms",
            "ordinary p50 / p99 / max during ms",
            "ordinary sent",
            "attack s",
            "what the attack got",
        ],
        rows_of(runs),
    )
    verdicts = targets(runs)
    body = (
        "Setup: a fresh `sidecred webhook` process over TLS per attack (pinned to CPU "
        f"{support.SERVER_CPU}; attacks, API stub and probe on CPU {support.LOADGEN_CPU}), the "
        "API stub holding namespace `shop` with a policy. Ordinary admissions (an annotated pod, "
        f"permitted role) at {PROBE_RATE:g}/s on kept-alive connections (bench/open_loop.py), "
        f"{BASELINE_SECONDS:g} s at rest just before the attack (the baseline) and for the whole "
        "attack; RSS is the peak VmRSS sampled every 50 ms. Attacks: stalled = 80 TLS "
        "connections announcing 3 MiB, sending 2.9 MiB and stalling; names = 1,200 reviews "
        "naming distinct 60,000-character namespaces; unknown = 600 reviews naming distinct "
        "valid namespaces that do not exist; huge = 4 clients sending 2 MiB reviews of a "
        f"10,000-container pod back to back for {HUGE_SECONDS:g} s; connections = 1,000 TLS "
        "connections announcing 64 KiB, sending 60 KB and stalling (not in the review; the "
        "connection cap's own cost); patterns = 600 Namespace reviews, each with a distinct 1.5 KB "
        "policy pattern (not in the review either). `before` is the revision "
        "given with --before, measured the same way in the same run.\n\n"
        f"{table}\n\n{support.targets_table(verdicts)}\n\n{READING}"
    )
    print(body)
    support.write_section("siege", "11. The webhook under siege", command, body)
    return all(ok for _, _, ok in verdicts)


# --- main --------------------------------------------------------------------------------
def source_of(rev: str, work: Path) -> Path:
    source = work / f"source-{rev}"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(support.REPO), "archive", rev], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV", help="also attack this revision")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument(
        "--send-huge", nargs=3, metavar=("URL", "CA", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.send_huge:
        url, ca, seconds = args.send_huge
        send_huge(url, ca, float(seconds))
        return 0
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(support.LOADGEN_CPU)})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # 1,000 connections
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        parser.error(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
    work = support.workdir("siege")
    cert_dir = work / "tls"
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the caBundle
        if certs_main(["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(cert_dir)]):
            raise RuntimeError("sidecred certs failed")
    body_file = work / "ordinary.json"
    body_file.write_bytes(review_bytes(ordinary_pod()))
    versions = [("after", support.REPO)]
    if args.before:
        versions.insert(0, ("before", source_of(args.before, work)))
    runs = []
    for attack in attacks:
        for label, source in versions:
            print(f"=== {attack}: {label}", file=sys.stderr)
            runs.append(run_attack(Target(label, source, work, cert_dir), attack, body_file))
    command = "python3 bench/siege.py" + (f" --before {args.before}" if args.before else "")
    if attacks != list(ATTACKS):
        command += f" --attacks {','.join(attacks)}"
    return 0 if report(runs, command) else 1


if __name__ == "__main__":
    raise SystemExit(main())
