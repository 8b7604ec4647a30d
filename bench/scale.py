"""Benchmark 11: cluster scale. The webhook and the broker against a cluster's worth of pods.

The API stub (its own process) holds realistic objects from `sidecred.dev.cluster`:
namespaces with policy and managedFields, injected pods (the webhook's own mutation in
broker mode, 10 to 13 KB of JSON) and half as many ordinary pods (5 to 8 KB), with
status, ownerReferences and managedFields. For each row, each server runs alone, as a real
process over TLS (pinned to one CPU, the stub and the probes to the other), and reports:

- time to synced: the webhook's namespace cache (its /readyz) and its event reporter's pod
  cache (its "pod cache synced" log line); the broker's /readyz (both caches);
- RSS once synced and its peak (VmHWM) during the initial list;
- /healthz over a new TLS connection every 100 ms while it syncs (handshake included):
  p99, worst, and failures (2 s timeout);
- the webhook's admission p99 (POST /mutate, keep-alive, 20 per second) while its pod cache
  syncs, against its p99 afterwards in the same run;
- watch throughput: the stub changes injected pods at 1,000 per second for 10 s; the
  server's CPU per event, and how far behind the stub's writes to its watch stream were.

Slopes: per injected pod between the 2k and 20k rows; per namespace between two rows
without pods (1,000 and 10,000 namespaces).

    python3 bench/scale.py [--rows ns1k,ns10k,2k,20k,150k] [--churn-seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import io
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.certs.cli import main as certs_main
from sidecred.dev.kube_stub import (
    KubeApiStub,
    StubRequest,
    StubResponse,
    json_response,
    write_kubeconfig,
)
from sidecred.dev.token_review import TokenAuthority
from sidecred.webhook.review import admission_review, pod_request

SERVICE, NAMESPACE = "sidecred", "sidecred-system"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"
BROKER_URL = f"https://sidecred-broker.{NAMESPACE}.svc:8444"
BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"
# (name, namespaces, injected pods, ordinary pods)
ROWS = {
    "ns1k": (1_000, 0, 0),
    "ns10k": (10_000, 0, 0),
    "2k": (10_000, 2_000, 1_000),
    "20k": (10_000, 20_000, 10_000),
    "150k": (10_000, 100_000, 50_000),
}
CHURN_RATE = 1000
CHURN_POOL = 2000  # pods the churn cycles through
PROBE_PERIOD = 0.1
PROBE_TIMEOUT = 2.0
ADMISSION_RATE = 20.0
READY_TARGET_S = 20.0
POD_TARGET_B = 2048
NAMESPACE_TARGET_B = 1024


# --- the stub process -------------------------------------------------------------------
class Churn:
    """Changes injected pods at a steady rate in the stub process, on request."""

    def __init__(self, stub: KubeApiStub, pool: list[dict[str, Any]]) -> None:
        self.stub, self.pool = stub, pool
        self.made = 0
        self.started = self.finished = 0.0
        self.last_version = 0

    def start(self, request: StubRequest) -> StubResponse:
        rate, seconds = int(request.query["rate"]), float(request.query["seconds"])
        threading.Thread(target=self._run, args=(rate, seconds), daemon=True).start()
        return json_response(202, {"rate": rate, "seconds": seconds})

    def _run(self, rate: int, seconds: float) -> None:
        from sidecred.dev.cluster import changed

        self.made, self.started, self.finished = 0, time.monotonic(), 0.0
        total = int(rate * seconds)
        while self.made < total:
            due = min(total, int((time.monotonic() - self.started) * rate) + 1)
            while self.made < due:
                pod = changed(self.pool[self.made % len(self.pool)], self.made)
                self.stub.put_many("pods", [pod])
                self.made += 1
            time.sleep(0.005)
        self.finished = time.monotonic()
        last = self.stub.get("pods", *_key(self.pool[(total - 1) % len(self.pool)]))
        if last is None:
            raise RuntimeError("the last pod written is not in the stub")
        self.last_version = int(last["metadata"]["resourceVersion"])

    def status(self, request: StubRequest) -> StubResponse:
        sent = self.stub.watch_sent.get("pods", (0, 0.0))
        behind = max(0.0, sent[1] - self.finished) if self.finished and sent[0] >= self.last_version else None  # fmt: skip
        return json_response(
            200,
            {
                "made": self.made,
                "seconds": (self.finished or time.monotonic()) - self.started,
                "done": bool(self.finished),
                "delivered": behind is not None,
                "behind_s": behind,
            },
        )


def _key(pod: dict[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["name"], pod["metadata"]["namespace"]


def serve_stub(args: argparse.Namespace) -> int:
    from sidecred.dev.cluster import (
        PodFactory,
        broker_settings,
        cluster_pods,
        namespace_names,
        namespace_object,
    )

    config = broker_settings(Path(args.ca_file).read_text())
    config = type(config)(**{**config.__dict__, "broker_url": args.broker_url})
    names = namespace_names(args.namespaces)
    stub = KubeApiStub()
    stub.put_many("namespaces", (namespace_object(name) for name in [*names, NAMESPACE]))
    factory = PodFactory(config)
    pool: list[dict[str, Any]] = []

    def pods() -> Any:
        for pod in cluster_pods(factory, names, args.injected, args.ordinary):
            if len(pool) < CHURN_POOL and pod["metadata"]["name"].endswith("i"):
                pool.append(pod)
            yield pod

    stub.put_many("pods", pods())
    churn = Churn(stub, pool)
    TokenAuthority(stub)  # the issuer's keys, which the broker needs to be ready
    stub.route("POST", "/bench/churn", churn.start, "bench")
    stub.route("GET", "/bench/churn", churn.status, "bench")
    stub.start()
    Path(args.url_file).write_text(stub.url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()
    return 0


# --- probes ----------------------------------------------------------------------------
def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Verifies the chain (a full handshake); the name is the Service's, not 127.0.0.1."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    return context


def fresh_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, float]:
    """GET over a new TLS connection: (status, seconds), status 0 on failure or timeout."""
    started = time.perf_counter()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - started


@dataclass
class Prober:
    """A thread getting /healthz over a new TLS connection every PROBE_PERIOD."""

    port: int
    context: ssl.SSLContext
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (when, status, s)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Prober:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stopping.is_set():
            status, seconds = fresh_get(self.port, "/healthz", self.context)
            self.samples.append((time.monotonic(), status, seconds))
            self.stopping.wait(PROBE_PERIOD)

    def between(self, start: float, end: float) -> list[tuple[float, int, float]]:
        return [s for s in self.samples if start <= s[0] <= end]


def admission_body() -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "search-84b6c7d5f9-",
            "namespace": "team1-ns00001",
            "annotations": {"iam.amazonaws.com/role": "app-reader"},
        },
        "spec": {
            "serviceAccountName": "search",
            "containers": [{"name": "search", "image": "registry.example.com/search:2.0"}],
        },
    }
    return json.dumps(dict(admission_review(pod_request(pod, namespace="team1-ns00001")))).encode()


@dataclass
class Admitter:
    """POST /mutate at ADMISSION_RATE over one keep-alive connection: (when, seconds, ok)."""

    port: int
    context: ssl.SSLContext
    samples: list[tuple[float, float, bool]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Admitter:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=5)  # fmt: skip

    def _run(self) -> None:
        body, conn = admission_body(), self._connect()
        headers = {"Content-Type": "application/json", "Host": SERVER_NAME}
        while not self.stopping.is_set():
            started = time.perf_counter()
            try:
                conn.request("POST", "/mutate", body, headers)
                answer = json.loads(conn.getresponse().read())
                ok = answer["response"]["allowed"] is True
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                ok, conn = False, self._connect()
            self.samples.append((time.monotonic(), time.perf_counter() - started, ok))
            self.stopping.wait(max(0.0, 1 / ADMISSION_RATE - (time.perf_counter() - started)))

    def p99_ms(self, start: float, end: float) -> tuple[float, int, int]:
        chosen = [s for s in self.samples if start <= s[0] <= end]
        ok = [s[1] * 1000 for s in chosen if s[2]]
        return support.percentile(ok, 99), len(chosen), len(chosen) - len(ok)


# --- one server under test --------------------------------------------------------------
@dataclass
class Setup:
    work: Path
    certs: Path
    kubeconfig: Path
    stub_url: str


def start_stub(work: Path, namespaces: int, injected: int, ordinary: int) -> tuple[subprocess.Popen[bytes], str, float]:  # fmt: skip
    url_file = work / "stub-url"
    url_file.unlink(missing_ok=True)
    cmd = [
        sys.executable, __file__, "stub", "--namespaces", str(namespaces),
        "--injected", str(injected), "--ordinary", str(ordinary),
        "--ca-file", str(work / "tls" / "ca.crt"), "--broker-url", BROKER_URL,
        "--url-file", str(url_file),
    ]  # fmt: skip
    started = time.monotonic()
    with open(work / "stub.log", "ab") as log:
        process = subprocess.Popen(
            support.pinned(cmd, support.LOADGEN_CPU), stdout=log, stderr=subprocess.STDOUT
        )
    support.wait_until(lambda: url_file.exists() or process.poll() is not None, timeout=1800, what="the stub")  # fmt: skip
    if process.poll() is not None:
        raise RuntimeError(f"the stub exited: {(work / 'stub.log').read_text()[-2000:]}")
    return process, url_file.read_text(), time.monotonic() - started


def server_cmd(kind: str, setup: Setup, port: int) -> list[str]:
    return [
        sys.executable, "-m", "sidecred.cli", kind, "--port", str(port), "--host", "127.0.0.1",
        "--tls-cert", str(setup.certs / "tls.crt"), "--tls-key", str(setup.certs / "tls.key"),
        "--kubeconfig", str(setup.kubeconfig), "--base-role-arn", BASE_ROLE_ARN,
        "--region", "us-east-1", "--credential-source", "broker", "--broker-url", BROKER_URL,
        "--broker-ca-file", str(setup.certs / "ca.crt"),
    ]  # fmt: skip


def proc_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def stub_get(setup: Setup, path: str, method: str = "GET") -> dict[str, Any]:
    parts = urlsplit(setup.stub_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def ready(port: int, context: ssl.SSLContext) -> bool:
    return fresh_get(port, "/readyz", context)[0] == 200


def churn(setup: Setup, pid: int, seconds: float) -> dict[str, Any]:
    """Change pods at CHURN_RATE for `seconds`; the server's CPU per event and its lag."""
    before = support.cpu_seconds(pid)
    stub_get(setup, f"/bench/churn?rate={CHURN_RATE}&seconds={seconds:g}", "POST")
    status: dict[str, Any] = {}

    def finished() -> bool:
        status.update(stub_get(setup, "/bench/churn"))
        return bool(status["done"] and status["delivered"])

    support.wait_until(finished, timeout=seconds + 120, interval=0.1, what="the churn")
    cpu = support.cpu_seconds(pid) - before
    return {"events": status["made"], "rate": status["made"] / status["seconds"], "cpu": cpu, "behind_s": status["behind_s"]}  # fmt: skip


def measure_server(kind: str, setup: Setup, pods: int, churn_seconds: float) -> dict[str, Any]:
    context = tls_context(setup.certs / "ca.crt")
    port = support.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECRED_", "AWS_"))}
    env.update(SIDECRED_POD_NAMESPACE=NAMESPACE, SIDECRED_POD_NAME=f"bench-{kind}",
               AWS_ACCESS_KEY_ID="AKIAFAKE", AWS_SECRET_ACCESS_KEY="fake", AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    log_path = setup.work / f"{kind}-{pods}.log"
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(support.pinned(server_cmd(kind, setup, port), support.SERVER_CPU),
                                   stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set() and process.poll() is None:
            peak[0] = max(peak[0], proc_kib(process.pid, "VmRSS"))
            sampling.wait(0.05)

    threading.Thread(target=sample, daemon=True).start()
    result: dict[str, Any] = {"kind": kind, "pods": pods}
    try:
        support.wait_until(lambda: fresh_get(port, "/healthz", context)[0] == 200, timeout=120, interval=0.05, what=kind)  # fmt: skip
        result["listening_s"] = time.monotonic() - started
        prober = Prober(port, context).start()
        admitter = None
        support.wait_until(lambda: ready(port, context), timeout=1800, interval=0.1, what=f"{kind} ready")  # fmt: skip
        result["ready_s"] = time.monotonic() - started
        if kind == "webhook":
            admitter = Admitter(port, context).start()
            support.wait_until(lambda: "pod cache synced" in log_path.read_text(errors="replace"), timeout=1800, interval=0.1, what="the webhook's pod cache")  # fmt: skip
        synced = time.monotonic()
        result["synced_s"] = synced - started
        probes = prober.between(started, synced)
        result["healthz"] = {
            "count": len(probes),
            "failed": sum(1 for p in probes if p[1] != 200),
            "p99_ms": support.percentile([p[2] * 1000 for p in probes if p[1] == 200], 99),
            "max_ms": max([p[2] * 1000 for p in probes], default=float("nan")),
        }
        cpu_before, idle_started = support.cpu_seconds(process.pid), time.monotonic()
        time.sleep(10.0)  # settle; the webhook's admission p99 afterwards is the baseline
        result["idle_cpu_pct"] = 100 * (support.cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - idle_started)  # fmt: skip
        result["rss_kib"] = proc_kib(process.pid, "VmRSS")
        result["hwm_kib"] = max(proc_kib(process.pid, "VmHWM"), peak[0])
        if admitter is not None:
            result["admission_during"] = admitter.p99_ms(result["ready_s"] + started, synced)
            result["admission_after"] = admitter.p99_ms(synced, time.monotonic())
            admitter.stopping.set()
        prober.stopping.set()
        if pods and churn_seconds:
            result["churn"] = churn(setup, process.pid, churn_seconds)
            idle = result["idle_cpu_pct"] / 100 * churn_seconds
            result["churn"]["us_per_event"] = 1e6 * max(0.0, result["churn"]["cpu"] - idle) / result["churn"]["events"]  # fmt: skip
    finally:
        sampling.set()
        support.stop_process(process)
    return result


# --- report ------------------------------------------------------------------------------
def mib(kib: float) -> str:
    return support.fmt(kib / 1024, 1)


def slope(results: dict[str, dict[str, dict]], kind: str, low: str, high: str, count: int) -> float | None:  # fmt: skip
    """Bytes of RSS per object between two rows (None when a row was not run)."""
    if low not in results or high not in results:
        return None
    return (results[high][kind]["rss_kib"] - results[low][kind]["rss_kib"]) * 1024 / count


def row_lines(name: str, row: dict[str, dict]) -> list[list[object]]:
    lines: list[list[object]] = []
    for kind in ("webhook", "broker"):
        r = row[kind]
        health = r["healthz"]
        during = r.get("admission_during")
        after = r.get("admission_after")
        churned = r.get("churn")
        lines.append([
            name, kind, support.fmt(r["ready_s"], 1), support.fmt(r["synced_s"], 1),
            mib(r["rss_kib"]), mib(r["hwm_kib"]), mib(r["hwm_kib"] - r["rss_kib"]),
            f"{support.fmt(health['p99_ms'], 1)} / {support.fmt(health['max_ms'], 0)} / {health['failed']} of {health['count']}",
            f"{support.fmt(during[0], 1)} ({during[1]}) vs {support.fmt(after[0], 1)}" if during and after else "",
            support.fmt(r["idle_cpu_pct"], 1),
            f"{support.fmt(churned['rate'], 0)}/s, {support.fmt(churned['us_per_event'], 0)} us, {support.fmt(churned['behind_s'] or 0, 2)} s" if churned else "",
        ])  # fmt: skip
    return lines


def reading(results: dict[str, dict[str, dict]]) -> str:
    """What the numbers say, from the largest row measured."""
    rows = [name for name in ROWS if "traced" in results.get(name, {})]
    if not rows:
        return ""
    largest = results[rows[-1]]["traced"]
    return (
        f"Reading: what a cache holds per pod is its projection (about "
        f"{largest['per_pod_b']:,.0f} B allocated at {rows[-1]}) plus the allocator's slack; a "
        f"list's transient is one page, its text and the item being parsed "
        f"({largest['transient_mib']:.0f} MiB), whatever the cluster's size. Time to sync is "
        f"parsing and projecting, and for the broker the canonical-sidecar check of each pod as "
        f"it arrives."
    )


def report(results: dict[str, dict[str, dict]], loads: dict[str, float], command: str) -> None:
    headers = [
        "row", "process", "ready s", "synced s", "RSS MiB", "peak MiB", "peak - RSS MiB",
        "/healthz during sync: p99 ms / worst ms / failed", "admission p99 ms during sync (n) vs after",
        "idle CPU %", "watch: changes/s, CPU per change, behind at end",
    ]  # fmt: skip
    table = [line for name in ROWS if name in results for line in row_lines(name, results[name])]
    traced = [
        [name, f"{results[name]['traced']['pods']:,}", support.fmt(results[name]["traced"]["held_mib"], 1),
         f"{results[name]['traced']['per_pod_b']:,.0f}", support.fmt(results[name]["traced"]["transient_mib"], 1)]
        for name in ROWS if name in results and "traced" in results[name]
    ]  # fmt: skip
    targets = []
    for kind in ("webhook", "broker"):
        per_pod = slope(results, kind, "2k", "20k", 18_000)
        if per_pod is not None:
            targets.append((f"{kind}: <= {POD_TARGET_B} B per injected pod (2k to 20k)", f"{per_pod:,.0f} B", per_pod <= POD_TARGET_B))  # fmt: skip
        per_ns = slope(results, kind, "ns1k", "ns10k", 9_000)
        if per_ns is not None:
            targets.append((f"{kind}: <= {NAMESPACE_TARGET_B} B per namespace (1k to 10k)", f"{per_ns:,.0f} B", per_ns <= NAMESPACE_TARGET_B))  # fmt: skip
        if "20k" in results:
            synced = results["20k"][kind]["synced_s"]
            targets.append((f"{kind}: synced within {READY_TARGET_S:g} s at 20k pods", f"{synced:.1f} s", synced <= READY_TARGET_S))  # fmt: skip
    body = "\n\n".join(
        [
            "Setup: the API stub in its own process (pinned to CPU 1, with the probes) holding "
            "`sidecred.dev.cluster` objects: namespaces with policy and managedFields; injected pods "
            "(the webhook's own broker-mode mutation; 10-13 KB of JSON each) and half as many "
            "ordinary pods (5-8 KB), with status, ownerReferences and managedFields. Each server runs "
            "alone (pinned to CPU 0), over TLS, events on (the webhook's reporter leads and syncs its "
            "pod cache). Ready: /readyz 200 (the webhook's namespace cache; the broker's namespace and "
            "pod caches). Synced: the webhook's reporter logs `pod cache synced`; the broker's ready. "
            "RSS 10 s after synced; peak = VmHWM. /healthz: a new TLS connection every 100 ms from "
            "start to synced (2 s timeout). Admission: POST /mutate at 20/s on a keep-alive "
            "connection while the pod cache syncs, against the next 10 s. Watch: the stub changes "
            f"injected pods at {CHURN_RATE}/s; CPU per change net of the idle CPU; 'behind' is how "
            "long after the last change the stub had written it to the server's watch stream. "
            "Stub load times: " + ", ".join(f"{k} {v:.0f} s" for k, v in loads.items()) + ".",
            support.markdown_table(headers, table),
            "The broker's pod cache again, in the benchmark's own process under tracemalloc "
            "(Python's allocations, not RSS): what it holds once synced, and the transient peak "
            "above that while it lists. RSS grows by more than the held bytes (freed page "
            "objects leave the allocator's arenas partly used); the peak is the list's, one "
            "page at a time. The first row also holds the client's one-time allocations "
            "(about 2 MiB), which the larger rows spread over more pods.",
            support.markdown_table(
                [
                    "row",
                    "pods held",
                    "held MiB",
                    "held B per pod",
                    "transient peak MiB",
                ],
                traced,
            ),
            reading(results),
            support.targets_table(targets) if targets else "",
        ]
    )
    support.write_section("scale", "11. Cluster scale", command, body)


def list_peak(setup: Setup, injected: int) -> dict[str, float]:
    """The broker's pod cache run in this process under tracemalloc: what it holds once
    synced, and the peak above that while it lists (the transient: one page at a time)."""
    from kubernetes import client

    from sidecred.broker.sidecar_check import broker_sidecar_problem
    from sidecred.dev.cluster import broker_settings
    from sidecred.kube.projection import PodProjector
    from sidecred.kube.watch import PodCache

    config = broker_settings((setup.certs / "ca.crt").read_text())
    config = type(config)(**{**config.__dict__, "broker_url": BROKER_URL})

    def check(pod: Any) -> str | None:
        return broker_sidecar_problem(pod, config)

    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=setup.stub_url)))
    pods = PodCache(api, PodProjector(frozenset({config.annotation_key}), check))
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        pods.start()
        if not pods.wait_synced(3600):
            raise RuntimeError("the in-process pod cache did not sync")
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pods.stop()
    return {
        "held_mib": (held - base) / 2**20,
        "transient_mib": (peak - held) / 2**20,
        "per_pod_b": (held - base) / max(injected, 1),
        "pods": len(pods),
    }


def run_row(name: str, work: Path, churn_seconds: float) -> tuple[dict[str, dict], float]:
    namespaces, injected, ordinary = ROWS[name]
    stub, url, load_s = start_stub(work, namespaces, injected, ordinary)
    try:
        setup = Setup(work, work / "tls", write_kubeconfig(work / "kubeconfig.json", url), url)
        row = {}
        for kind in ("webhook", "broker"):
            row[kind] = measure_server(kind, setup, injected, churn_seconds)
            print(name, json.dumps(row[kind]), flush=True)
        if injected:
            row["traced"] = list_peak(setup, injected)
            print(name, json.dumps(row["traced"]), flush=True)
        return row, load_s
    finally:
        support.stop_process(stub)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    stub = sub.add_parser("stub", help="(internal) serve a populated API stub")
    for flag in ("--namespaces", "--injected", "--ordinary"):
        stub.add_argument(flag, type=int, required=True)
    for flag in ("--ca-file", "--broker-url", "--url-file"):
        stub.add_argument(flag, required=True)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))  # fmt: skip
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also keep the raw results here (merged)")
    parser.add_argument(
        "--report-only",
        metavar="COMMAND",
        help="rewrite the RESULTS.md section from --json, naming COMMAND as what produced it",
    )
    args = parser.parse_args()
    if args.command == "stub":
        return serve_stub(args)
    work = support.workdir("scale")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the CA bundle
        assert certs_main(["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(work / "tls")]) == 0  # fmt: skip
    results: dict[str, dict[str, dict]] = {}
    if args.json and args.json.exists():
        results = json.loads(args.json.read_text())
    if args.report_only:
        if not args.json:
            parser.error("--report-only needs --json")
        command = args.report_only
    else:
        for name in args.rows.split(","):
            results[name], load_s = run_row(name, work, args.churn_seconds)
            results[name]["stub"] = {"load_s": load_s}
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
        command = "python3 bench/scale.py " + " ".join(sys.argv[1:])
    loads = {name: row["stub"]["load_s"] for name, row in results.items() if "stub" in row}
    report(results, loads, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
