"""Benchmark 4: admissions per second and latency of `/mutate` over TLS.

A real `sidecred webhook` process (one uvicorn worker, TLS from `sidecred
certs`) whose namespace cache is synced from the local API stub
(`webhook.kube_stub`, in this process). wrk (a separate process, pinned to the
other CPU) posts the same AdmissionReview, an annotated Deployment pod in a
namespace whose policy permits its role, at concurrency 1, 16 and 64; then
bench/open_loop.py sends a fixed 200 admissions/s. The stub counts every API
request, so the run also shows how many API calls an admission costs with a
warm cache. The baseline, measured in the same run under the same loads, is
the same stack (FastAPI on one uvicorn worker, same TLS) answering a fixed
allow (bench/baseline_admission.py).

Targets: >= 1000 admissions/s; p99 <= 10 ms at 200/s.

    python3 bench/admission.py [--seconds 5]
"""

from __future__ import annotations

import contextlib
import io
import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.certs.cli import main as certs_main
from sidecred.dev.kube_stub import KubeApiStub, write_kubeconfig
from sidecred.dev.processes import wait_until
from sidecred.webhook.review import admission_review as review_envelope
from sidecred.webhook.review import pod_request

CONCURRENCY = (1, 16, 64)
FIXED_RATE = 200.0
RATE_TARGET = 1000.0
P99_TARGET_MS = 10.0
SERVICE, NAMESPACE = "sidecred", "sidecred-system"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"
BASE_ROLE_ARN = "arn:aws:iam::111122223333:role/"
POLICY = {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/shop-.*"}


def admission_review() -> dict[str, object]:
    """CREATE of a Deployment's pod (generateName, no name yet) asking for a permitted role."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "search-84b6c7d5f9-",
            "namespace": "shop",
            "labels": {"app": "search", "pod-template-hash": "84b6c7d5f9"},
            "annotations": {"iam.amazonaws.com/role": "shop-search"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "search-84b6c7d5f9",
                    "uid": "1e2d3c4b-5a69-4788-9766-554433221100",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "search",
            "containers": [
                {
                    "name": "search",
                    "image": "registry.example.com/search:2.0",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }
    return dict(review_envelope(pod_request(pod, namespace="shop")))


def tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def post(url: str, body: bytes, context: ssl.SSLContext) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5, context=context) as resp:
        return json.loads(resp.read())


def answers(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_server(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            support.pinned(cmd, support.SERVER_CPU),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=support.REPO,
        )


class OpenLoopResult(TypedDict):
    """bench/open_loop.py's last output line, as JSON gives it back (status codes as strings)."""

    requests: int
    errors: int
    statuses: dict[str, int]
    achieved_rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def open_loop(url: str, body_file: Path, ca_file: Path, seconds: float) -> OpenLoopResult:
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("open_loop.py")),
        url,
        *("--rate", f"{FIXED_RATE:g}", "--seconds", f"{seconds:g}", "--body", str(body_file)),
        *("--cafile", str(ca_file), "--server-name", SERVER_NAME),
    ]
    out = subprocess.run(
        support.pinned(cmd, support.LOADGEN_CPU),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    args = support.options(
        __doc__,
        __file__,
        seconds=(5.0, "wrk duration per level"),
        rate_seconds=(10.0, "fixed-rate duration"),
    )

    work = support.workdir("admission")
    cert_dir = work / "tls"
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the caBundle
        issued = certs_main(
            ["--service", SERVICE, "--namespace", NAMESPACE, "--out", str(cert_dir)]
        )
    if issued != 0:
        raise RuntimeError("sidecred certs failed")
    ca_file, cert, key = cert_dir / "ca.crt", cert_dir / "tls.crt", cert_dir / "tls.key"
    context = tls_context(ca_file)
    context.check_hostname = False  # readiness polls use 127.0.0.1; the loads verify the name

    stub = KubeApiStub()
    stub.add_namespace("shop", POLICY)
    stub.add_namespace("default")
    stub.start()
    kubeconfig = write_kubeconfig(work / "kubeconfig.json", stub.url)
    review = json.dumps(admission_review()).encode()
    body_file = work / "review.json"
    body_file.write_bytes(review)
    webhook_port, baseline_port = support.free_port(), support.free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            start_server(
                [
                    *(sys.executable, "-m", "sidecred.cli", "webhook"),
                    *("--tls-cert", str(cert), "--tls-key", str(key)),
                    *("--host", "127.0.0.1", "--port", str(webhook_port)),
                    *("--kubeconfig", str(kubeconfig), "--base-role-arn", BASE_ROLE_ARN),
                ],
                work / "webhook.log",
            )
        )
        processes.append(
            start_server(
                [
                    sys.executable,
                    str(Path(__file__).with_name("baseline_admission.py")),
                    *(str(baseline_port), str(cert), str(key)),
                ],
                work / "baseline.log",
            )
        )
        webhook_url = f"https://127.0.0.1:{webhook_port}"
        baseline_url = f"https://127.0.0.1:{baseline_port}"
        wait_until(lambda: answers(webhook_url + "/readyz", context), 60, "webhook /readyz")
        wait_until(lambda: answers(baseline_url + "/healthz", context), 60, "baseline")

        decision = post(webhook_url + "/mutate", review, context)["response"]
        assert isinstance(decision, dict)
        if not decision.get("allowed") or decision.get("patchType") != "JSONPatch":
            raise RuntimeError(f"the benchmark pod was not injected: {decision}")

        script = support.wrk_script(
            work / "post.lua",
            method="POST",
            headers={"Content-Type": "application/json"},
            body=review.decode(),
        )
        targets = {
            "webhook": (webhook_url + "/mutate", processes[0].pid),
            "baseline": (baseline_url + "/mutate", processes[1].pid),
        }
        for url, _ in targets.values():
            support.run_wrk(url, script, 16, 1)  # warm-up
        api_before = sum(stub.requests[k] for k in ("get", "list"))
        webhook_requests = 0
        results: dict[tuple[str, object], support.LoadResult] = {}
        for connections in CONCURRENCY:
            for name, (url, pid) in targets.items():
                result = support.run_wrk(url, script, connections, args.seconds, pid)
                results[name, connections] = result
                if name == "webhook":
                    webhook_requests += result.requests
                print(
                    f"{name:8} c={connections:<3} {result.rps:8.0f} adm/s  p50 {result.p50_ms:.2f} ms"
                    f"  p99 {result.p99_ms:.2f} ms  cpu {result.cpu_us_per_request:.0f} us/adm"
                    f"  errors {result.socket_errors + result.non2xx}"
                )
        fixed: dict[str, OpenLoopResult] = {}
        for name, (url, _) in targets.items():
            fixed[name] = open_loop(url, body_file, ca_file, args.rate_seconds)
            if name == "webhook":
                webhook_requests += fixed[name]["requests"]
            print(f"{name:8} {FIXED_RATE:g}/s: {json.dumps(fixed[name])}")
        api_calls = sum(stub.requests[k] for k in ("get", "list")) - api_before
    finally:
        for process in processes:
            support.stop_process(process)
        stub.stop()

    rows = support.comparison_rows(results, "webhook", CONCURRENCY, ("p50_ms", "p99_ms"), 2)
    for name, f in fixed.items():
        rows.append(
            [
                name,
                f"open loop {FIXED_RATE:g}/s",
                f"{f['achieved_rate']:,.0f}",
                f"{f['p50_ms']:.2f}",
                f"{f['p99_ms']:.2f}",
                "",
                f["errors"] + sum(v for k, v in f["statuses"].items() if k != "200"),
                "",
            ]
        )
    table = support.markdown_table(
        [
            "server",
            "concurrency",
            "admissions/s",
            "p50 ms",
            "p99 ms",
            "server CPU us/admission",
            "errors",
            "vs baseline",
        ],
        rows,
    )
    best = max(results["webhook", c].rps for c in CONCURRENCY)
    p99_fixed = fixed["webhook"]["p99_ms"]
    per_admission = api_calls / webhook_requests
    summary = support.targets_table(
        [
            [
                f">= {RATE_TARGET:g} admissions/s",
                f"{best:,.0f}/s (best level)",
                best >= RATE_TARGET,
            ],
            [
                f"p99 <= {P99_TARGET_MS:g} ms at {FIXED_RATE:g}/s",
                f"{p99_fixed:.2f} ms (baseline {fixed['baseline']['p99_ms']:.2f} ms)",
                p99_fixed <= P99_TARGET_MS,
            ],
            [
                "Kubernetes API calls per admission, warm cache (expect 0)",
                f"{api_calls} calls in {webhook_requests:,} admissions ({per_admission:.4f})",
                api_calls == 0,
            ],
        ],
    )
    setup = f"""
Setup: `sidecred webhook` (one uvicorn worker, TLS certificate from `sidecred certs`, namespace
cache synced from `webhook.kube_stub` in the benchmark process) and the baseline
`bench/baseline_admission.py` (FastAPI + uvicorn, same TLS, fixed allow). The request is a
{len(review):,}-byte AdmissionReview (CREATE of a Deployment's pod asking for a role its namespace
permits; every webhook answer is an injection with a JSON patch). Closed loop: `wrk -t1 -cN
-d{args.seconds:g}s` over keep-alive TLS connections. Open loop: `bench/open_loop.py` at
{FIXED_RATE:g}/s for {args.rate_seconds:g} s, latency from each request's due time. Servers pinned to
CPU {support.SERVER_CPU}, load generators to CPU {support.LOADGEN_CPU}. API calls are the stub's
GET and LIST counters during all measured loads (the watch stream stays open).
"""
    support.publish("admission", "4. Admission", args.command, setup, table, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
