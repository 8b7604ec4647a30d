"""Benchmark 9: the credential broker, side by side with a direct AssumeRole on the same moto.

Part A, real processes on 127.0.0.1: `sidecred broker` over TLS (pinned to CPU
0) against the API server stub (TokenReview, pods, namespaces; in this
process) and `moto_server` as STS. Measured from this process over one
keep-alive TLS connection:
- issuance on a miss (first request of a new pod: TokenReview, pod GET,
  `sts:AssumeRole`) and from the broker's caches (review, pod, namespace and
  credential generation all held), p50 and p99;
- the same machine's direct `sts:AssumeRole` (botocore) against the same moto,
  and `GET /healthz` over the same TLS connection (the transport floor);
- broker RSS once it holds 1,000 pods' credentials, against its RSS at start.

Part B, the schedule on a simulated clock: the real `Issuer` and
`TokenReviewer` (reviewing against the stub, whose token issuer shares the
simulated clock), each pod's sidecar calling at the times the real
`sidecar.schedule.next_refresh_at` gives for 1 h sessions, each call going to a
random broker replica; the kubelet rotates each pod's token at 80% of its
lifetime. STS is a counter issuing 1 h credentials on the simulated clock.
Reported: STS calls per pod-hour and TokenReviews per issuance, by replica
count and token lifetime.

    python3 bench/broker_issuance.py [--pods 1000] [--sim-pods 100] [--sim-hours 24]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import botocore.session
import httpx
from kubernetes import client

from bench import support
from sidecred.broker.authorise import Grant
from sidecred.broker.issuer import Issuer
from sidecred.broker.metrics import BrokerMetrics
from sidecred.broker.sidecar_check import broker_sidecar_problem
from sidecred.broker.token_review import TokenReviewer
from sidecred.dev.kube_stub import KubeApiStub
from sidecred.dev.token_review import TokenAuthority
from sidecred.kube.watch import CACHE, Lookup
from sidecred.sidecar.credentials import Credentials
from sidecred.sidecar.schedule import next_refresh_at
from tests.broker.broker_process import SNI, BrokerProcess, start_broker
from tests.broker.pods import CONFIG, READER, broker_pod, namespace
from tests.support.sts import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY

SESSION_S = 3600
TARGET_STS_PER_POD_HOUR = 2.0
TARGET_REVIEWS_PER_ISSUANCE = 0.1
TARGET_RSS_MB = 150.0
HIT_ROUNDS = 5  # cached issuances per pod in the latency sample
# Counted from here on: every replica has reviewed each pod's first token.
WARM_UP_S = 3600


# --- part A: real processes ------------------------------------------------------------
def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def issue(http: httpx.Client, token: str) -> None:
    response = http.post(
        "/v1/credentials", headers={"Authorization": f"Bearer {token}"}, extensions=SNI
    )
    if response.status_code != 200:
        raise RuntimeError(f"issuance failed: {response.status_code} {response.text}")


def direct_assume_role(sts_url: str, count: int) -> list[float]:
    sts = botocore.session.get_session().create_client(
        "sts",
        region_name="us-east-1",
        endpoint_url=sts_url,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )
    return [
        timed(lambda i=i: sts.assume_role(RoleArn=READER, RoleSessionName=f"shop.direct-{i}"))
        for i in range(count)
    ]


@dataclass
class Measured:
    miss: list[float]
    hit: list[float]
    healthz: list[float]
    direct: list[float]
    rss_start_mb: float
    rss_loaded_mb: float
    pods: int


def start_stub(clock: Callable[[], float] = time.time) -> tuple[KubeApiStub, TokenAuthority]:
    """The API stub with the "shop" namespace and TokenReview, answering without Nagle delays.

    The stub writes a response's head and body in two writes; without TCP_NODELAY
    the body waits for the client's delayed ACK (40 ms on Linux), which the real
    API server does not cost. Accepted sockets inherit the option from the listener.
    """
    stub = KubeApiStub()
    stub.put("namespaces", namespace())
    authority = TokenAuthority(stub, clock=clock)
    stub.start()
    stub._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    return stub, authority


def measure_processes(pods: int, workdir: Path) -> Measured:
    stub, authority = start_stub()
    sts = support.start_moto()
    broker: BrokerProcess | None = None
    try:
        broker = start_broker(workdir, stub.url, sts.url)
        if shutil.which("taskset"):  # the server under test on its own CPU
            cmd = ["taskset", "-pc", support.SERVER_CPU, str(broker.process.pid)]
            subprocess.run(cmd, check=False, capture_output=True)
        rss_start = support.rss_kib(broker.process.pid) / 1024
        tokens = [
            authority.pod_token(stub.put("pods", broker_pod(f"web-{i}", config=broker.config)))
            for i in range(pods)
        ]
        with broker.client() as http:
            http.get("/healthz", extensions=SNI)
            miss = [timed(lambda t=t: issue(http, t)) for t in tokens]
            hit = [timed(lambda t=t: issue(http, t)) for _ in range(HIT_ROUNDS) for t in tokens]
            healthz = [timed(lambda: http.get("/healthz", extensions=SNI)) for _ in range(2000)]
        rss_loaded = support.rss_kib(broker.process.pid) / 1024
        direct = direct_assume_role(sts.url, min(pods, 500))
    finally:
        if broker is not None:
            broker.stop()
        sts.stop()
        stub.stop()
    return Measured(miss, hit, healthz, direct, rss_start, rss_loaded, pods)


# --- part B: the schedule on a simulated clock -----------------------------------------
class SimClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


class CountingSts:
    """STS on the simulated clock: 1 h credentials, every call counted."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.calls = 0

    def assume(self, grant: Grant) -> Credentials:
        self.calls += 1
        expires = datetime.fromtimestamp(self.clock() + grant.duration, UTC)
        return Credentials("ASIA", "secret", "token", expires, "123456789012", grant.role_arn)


class Objects:
    """Pods and namespaces as the watch caches hold them."""

    synced = True
    last_error = ""

    def __init__(self, stub: KubeApiStub) -> None:
        self._stub = stub

    def get(self, *key: str) -> Lookup:
        if len(key) == 1:
            return Lookup(self._stub.get("namespaces", key[0]), CACHE)
        return Lookup(self._stub.get("pods", key[1], key[0]), CACHE)


@dataclass
class Schedule:
    replicas: int
    token_lifetime_s: int
    issuances: int
    sts_calls: int
    reviews: int
    pod_hours: float


def simulate(replicas: int, token_lifetime_s: int, pods: int, hours: float, seed: int) -> Schedule:
    clock = SimClock()
    stub, authority = start_stub(clock)
    try:
        api = client.ApiClient(client.Configuration(host=stub.url))
        sts = CountingSts(clock)
        objects = Objects(stub)
        brokers = [
            Issuer(
                CONFIG,
                TokenReviewer(api, "sidecred-broker", clock=clock),
                objects,
                objects,
                sts,  # type: ignore[arg-type]
                broker_sidecar_problem,
                BrokerMetrics(),
                clock=clock,
            )
            for _ in range(replicas)
        ]
        return _run_schedule(
            brokers, authority, stub, clock, sts, pods, hours, seed, token_lifetime_s
        )
    finally:
        stub.stop()


def _run_schedule(
    brokers: list[Issuer],
    authority: TokenAuthority,
    stub: KubeApiStub,
    clock: SimClock,
    sts: CountingSts,
    pods: int,
    hours: float,
    seed: int,
    token_lifetime_s: int,
) -> Schedule:
    rng = random.Random(seed)
    start, end = clock.now, clock.now + hours * 3600
    warm_at = start + WARM_UP_S
    state = []
    for i in range(pods):
        pod = stub.put("pods", broker_pod(f"sim-{i}"))
        state.append({"pod": pod, "token": "", "rotate_at": 0.0, "due": start, "first": True})
    issuances = 0
    warm: tuple[int, int, int] | None = None  # (issuances, STS calls, reviews) when warm
    while True:
        entry = min(state, key=lambda s: s["due"])
        if entry["due"] >= end:
            break
        clock.now = entry["due"]
        if warm is None and clock.now >= warm_at:
            warm = (issuances, sts.calls, stub.requests["tokenreviews.create"])
        if clock.now >= entry["rotate_at"]:  # the kubelet rotates at 80% of the lifetime
            entry["token"] = authority.pod_token(entry["pod"], expires_in=token_lifetime_s)
            entry["rotate_at"] = clock.now + 0.8 * token_lifetime_s
        answer = rng.choice(brokers).issue(f"Bearer {entry['token']}")
        issuances += 1
        if answer.status != 200:
            raise RuntimeError(f"simulated issuance refused: {answer.body!r}")
        issued = datetime.fromtimestamp(clock.now, UTC)
        due = next_refresh_at(
            issued, issued + timedelta(seconds=SESSION_S), issued, rng, desync=entry["first"]
        )
        entry["due"], entry["first"] = due.timestamp(), False
    warm = warm or (issuances, sts.calls, stub.requests["tokenreviews.create"])
    return Schedule(
        len(brokers),
        token_lifetime_s,
        issuances - warm[0],
        sts.calls - warm[1],
        stub.requests["tokenreviews.create"] - warm[2],
        pods * (hours - WARM_UP_S / 3600),
    )


# --- report ----------------------------------------------------------------------------
def report(measured: Measured, schedules: list[Schedule], command: str) -> None:
    p = support.percentile
    rows = [
        ("broker, miss (review + pod GET + AssumeRole)", measured.miss),
        ("broker, from cache", measured.hit),
        ("direct sts:AssumeRole, botocore -> same moto", measured.direct),
        ("GET /healthz on the broker, same TLS connection", measured.healthz),
    ]
    direct_p50 = p(measured.direct, 50)
    latency = support.markdown_table(
        ["request", "n", "p50 ms", "p99 ms", "p50 vs direct AssumeRole"],
        [
            (
                name,
                len(v),
                support.fmt(p(v, 50), 3),
                support.fmt(p(v, 99), 3),
                f"{p(v, 50) / direct_p50:.2f}x",
            )
            for name, v in rows
        ],
    )
    schedule = support.markdown_table(
        [
            "replicas",
            "token lifetime",
            "issuances",
            "STS calls",
            "STS calls per pod-hour",
            "TokenReviews",
            "reviews per issuance",
        ],
        [
            (
                s.replicas,
                f"{s.token_lifetime_s // 3600} h",
                s.issuances,
                s.sts_calls,
                f"{s.sts_calls / s.pod_hours:.2f}",
                s.reviews,
                f"{s.reviews / s.issuances:.3f}",
            )
            for s in schedules
        ],
    )
    worst_sts = max(s.sts_calls / s.pod_hours for s in schedules)
    default_tokens = [s for s in schedules if s.token_lifetime_s == 86400]
    worst_reviews = max(s.reviews / s.issuances for s in default_tokens)
    rss_mb = measured.rss_loaded_mb
    targets = support.targets_table(
        [
            (
                f"STS calls per pod-hour <= {TARGET_STS_PER_POD_HOUR:g} (1 h sessions, any replica count)",
                f"{worst_sts:.2f}",
                worst_sts <= TARGET_STS_PER_POD_HOUR,
            ),
            (
                f"TokenReviews per issuance once warm <= {TARGET_REVIEWS_PER_ISSUANCE:g} (webhook's 24 h tokens)",
                f"{worst_reviews:.3f}",
                worst_reviews <= TARGET_REVIEWS_PER_ISSUANCE,
            ),
            (
                f"broker RSS holding {measured.pods:,} pods' credentials <= {TARGET_RSS_MB:g} MB",
                f"{rss_mb:.1f} MB (at start {measured.rss_start_mb:.1f} MB)",
                rss_mb <= TARGET_RSS_MB,
            ),
        ],
    )
    body = f"""
Setup: part A runs `sidecred broker` over TLS (pinned to CPU 0) against the API stub (TokenReview,
pods, namespaces; in the bench process, with TCP_NODELAY so its two-write responses cost no
delayed-ACK wait) and `moto_server`; {measured.pods:,} broker-mode pods, each issued once (a miss:
TokenReview, pod GET, AssumeRole) and then {HIT_ROUNDS} more times (from the broker's caches), over
one keep-alive TLS connection from this process. Side by side: a direct botocore `AssumeRole`
against the same moto, and `GET /healthz` on the same connection. Part B runs the real `Issuer`
and `TokenReviewer` on a simulated clock: each pod's sidecar calls at `next_refresh_at` times
(1 h sessions), each call to a random replica; tokens rotate at 80% of their lifetime; counted
after the first simulated hour (warm).

{latency}

{schedule}

{targets}

Reading: a cache hit costs about one `/healthz` round trip plus the worker-thread hop; a miss is a
direct AssumeRole plus a TokenReview and a pod GET. Replicas do not add STS calls: a sidecar
refreshes at about half its session, after a generation's reuse window (its first quarter), so
every refresh is one STS call whichever replica answers. TokenReviews grow with replicas and with
shorter tokens, because each replica reviews each token once; with the webhook's 24 h tokens they
stay under the goal at 3 replicas, with 1 h tokens they do not (a token lives for about 1.5
refreshes). The pod watch cache keeps a projection of each pod, well under a kilobyte (section
11, which measures the caches up to 150,000 pods), so what grows with pods here is mostly the
per-pod state of the issuances themselves (reviewed tokens, credential generations).
"""
    support.write_section("broker", "9. Credential broker", command, body)
    print(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--sim-pods", type=int, default=100)
    parser.add_argument("--sim-hours", type=float, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workdir = support.workdir("sidecred-bench-broker-")
    measured = measure_processes(args.pods, workdir)
    schedules = [
        simulate(replicas, lifetime, args.sim_pods, args.sim_hours, args.seed)
        for lifetime in (86400, 3600)
        for replicas in (1, 2, 3)
    ]
    command = "python3 bench/broker_issuance.py"
    if args.pods != 1000 or args.sim_pods != 100 or args.sim_hours != 24:
        command += f" --pods {args.pods} --sim-pods {args.sim_pods} --sim-hours {args.sim_hours:g}"
    report(measured, schedules, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
