"""Benchmark 8: the pod-event reporter's cost per pass over sidecred's pods.

Every SCAN_INTERVAL_SECONDS the leader replica walks its watch cache of injected
pods and reads /readyz (one pod-proxy call) only for sidecars the kubelet reports
not ready. This measures the CPU of one pass (`EventReporter.scan_once`) over
N cached pods that are all ready, so no proxy call happens and the number is the
reporter's own work, against a baseline pass in the same run that only reads each
pod's uid (the floor for touching every pod). The pods are the webhook's real
patched pods, projected as the PodCache keeps them (sidecred.kube.projection); the
cache is a list (the PodCache's `objects()` snapshot).

    python3 bench/event_reporter.py [--pods 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from bench.support import fmt, markdown_table, write_section
from sidecred.kube.events import SCAN_INTERVAL_SECONDS
from sidecred.kube.projection import PodProjector
from sidecred.pods.settings import Settings
from sidecred.webhook.check_cli import build_request
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.event_reporter import EventReporter, ReporterMetrics
from sidecred.webhook.mutate import apply_patch

ROLE = "arn:aws:iam::111122223333:role/shop-reader"
REPEATS = 5


class Snapshot:
    """What the reporter asks of its PodCache: the cached objects."""

    def __init__(self, pods: list) -> None:
        self.pods = pods

    def objects(self) -> list:
        return list(self.pods)


def ready_pods(count: int) -> list:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {"iam.amazonaws.com/role": ROLE},
        },
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    decision = decide_mutation(build_request(pod, "shop"), None, Settings(namespace_policy="off"))
    patched = apply_patch(pod, decision.patch or [])
    patched["status"] = {
        "phase": "Running",
        "podIP": "10.0.0.1",
        "initContainerStatuses": [{"name": "sidecred", "ready": True, "state": {"running": {}}}],
    }
    pods = []
    project = PodProjector()
    for index in range(count):
        copied = copy.deepcopy(patched)
        copied["metadata"].update(name=f"web-{index}", uid=f"uid-{index}")
        pods.append(project(copied))
    return pods


def best_cpu(run: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.process_time()
        run()
        timings.append(time.process_time() - started)
    return min(timings)


def measure(count: int) -> tuple[float, float]:
    pods = ready_pods(count)
    reporter = EventReporter(
        api=None,  # no pod needs a proxy read: never called
        # EventReporter takes the concrete LeaseElector and PodCache; scan_once uses no
        # elector and only objects() of the cache, so these stand in for them.
        elector=None,  # type: ignore[arg-type]
        pods=Snapshot(pods),  # type: ignore[arg-type]
        metrics=ReporterMetrics(CollectorRegistry()),
    )
    scan = best_cpu(reporter.scan_once)
    floor = best_cpu(lambda: [p["metadata"]["uid"] for p in Snapshot(pods).objects()])
    return scan, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="1000,10000,50000")
    counts = [int(n) for n in parser.parse_args().pods.split(",")]
    rows = []
    for count in counts:
        scan, floor = measure(count)
        share = scan / SCAN_INTERVAL_SECONDS
        rows.append([f"{count:,}", fmt(scan * 1000, 1), fmt(scan / count * 1e6, 2), fmt(floor * 1000, 2), f"{scan / floor:,.0f}x", f"{share:.2%}"])  # fmt: skip
    headers = ["ready pods", "pass CPU ms", "us per pod", "baseline pass ms", "vs baseline", "of one core at 10 s"]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    body = (
        "Setup: `EventReporter.scan_once` over N cached injected pods (their projections, as "
        "the pod cache holds them), all ready (so no pod-proxy "
        "call), best CPU time (`time.process_time`) of 5 passes; baseline in the same run: a pass "
        "that only reads each pod's uid. Pods whose sidecar is not ready add one pod-proxy GET each.\n\n"
        + table
    )
    write_section(
        "event_reporter", "8. Event reporter pass", "python3 bench/event_reporter.py", body
    )


if __name__ == "__main__":
    main()
