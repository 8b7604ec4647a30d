"""The event reporter end to end: a real sidecar whose STS refuses, read through the API
stub's pod proxy by the real kubernetes client, Events posted to the stub."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry

from sidecred.dev.kube_stub import KubeApiStub, json_response, status_object
from sidecred.dev.processes import wait_until
from sidecred.kube.events import AVAILABLE, UNAVAILABLE, micro_time
from sidecred.kube.watch import PodCache
from sidecred.webhook.event_reporter import EventReporter, ReporterMetrics
from sidecred.webhook.leader import LeaseElector
from tests.events.conftest import (
    WEBHOOK_NAMESPACE,
    Failing,
    answer_normally,
    core_api,
    events,
    injected_pod,
    pod_status,
)
from tests.sidecar.sidecar_process import ROLE_ARN, SidecarProcess, sidecar_env
from tests.support.scripted_sts import ScriptedSts, access_denied

STS_MESSAGE = "Not authorized to perform sts:AssumeRoleWithWebIdentity (fault-injected)"


def make_reporter(stub: KubeApiStub, identity: str, **kwargs: float) -> EventReporter:
    api = core_api(stub.url)
    coordination = client.CoordinationV1Api(api.api_client)
    elector = LeaseElector(coordination, WEBHOOK_NAMESPACE, "sidecred-events", identity)
    return EventReporter(
        api, elector, PodCache(api), ReporterMetrics(CollectorRegistry()), **kwargs
    )


@pytest.fixture
def reporters(stub: KubeApiStub) -> Iterator[Callable[..., EventReporter]]:
    made: list[EventReporter] = []

    def factory(identity: str = "webhook-0", **kwargs: float) -> EventReporter:
        made.append(make_reporter(stub, identity, **kwargs))
        return made[-1]

    yield factory
    for reporter in made:
        reporter.stop()


def scans(reporter: EventReporter) -> float:
    return reporter.metrics.registry.get_sample_value("sidecred_event_reporter_scans_total") or 0


def start_scanning(reporter: EventReporter) -> EventReporter:
    wait_until(reporter.prepare_scan, what="the pod cache's sync")
    return reporter


def test_refusing_sts_gives_an_event_naming_role_and_sts_message(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    pod = failing.pod
    reporter = start_scanning(reporters())
    reporter.scan_once()
    [event] = events(stub, UNAVAILABLE)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == pod["metadata"]["name"]
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert event["message"] == (
        f'sidecar cannot get credentials for role "{ROLE_ARN}": AccessDenied: {STS_MESSAGE}'
    )
    assert stub.requests["pods.proxy"] == 1
    registry = reporter.metrics.registry
    assert registry.get_sample_value("sidecred_sidecars_not_ready", {"code": "AccessDenied"}) == 1
    assert registry.get_sample_value("sidecred_pod_events_total", {"reason": UNAVAILABLE}) == 1


def test_recovery_gives_credentials_available(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    sidecar, sts, pod = failing.sidecar, failing.sts, failing.pod
    reporter = start_scanning(reporters())
    reporter.scan_once()
    assert len(events(stub, UNAVAILABLE)) == 1
    sts.behaviour = answer_normally
    sidecar.wait_ready()
    pod["status"] = pod_status(ready=True)
    stub.put("pods", pod)
    wait_until(lambda: reporter.pods.get("shop", pod["metadata"]["name"]).object["status"]["phase"] == "Running")  # fmt: skip
    reporter.scan_once()
    [event] = events(stub, AVAILABLE)
    assert event["type"] == "Normal" and ROLE_ARN in event["message"]
    reads = stub.requests["pods.proxy"]
    reporter.scan_once()  # recovered once, reported once; a ready sidecar costs no proxy call
    assert len(events(stub, AVAILABLE)) == 1 and len(events(stub, UNAVAILABLE)) == 1
    assert stub.requests["pods.proxy"] == reads


def test_repeated_failures_within_the_window_give_one_event(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    sts = failing.sts
    reporter = reporters(scan_interval=0.05, retry_period=0.05)
    reporter.start()
    wait_until(lambda: events(stub, UNAVAILABLE), what="the first event")
    passes = scans(reporter)
    # The sidecar keeps retrying STS (a `sidecred fetch` after a backoff of up
    # to a second) and failing meanwhile.
    wait_until(lambda: len(sts.calls) > 1, what="the sidecar retrying STS")
    wait_until(lambda: scans(reporter) >= passes + 5, what="five more passes")
    assert len(events(stub, UNAVAILABLE)) == 1
    assert stub.requests["pods.proxy"] >= passes + 5  # each pass read the sidecar again


def test_two_replicas_never_double_an_event_across_a_handover(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    first = reporters("webhook-0", scan_interval=0.05, retry_period=0.05)
    second = reporters("webhook-1", scan_interval=0.05, retry_period=0.05)
    first.start()
    wait_until(lambda: events(stub, UNAVAILABLE), what="the first event")
    second.start()
    wait_until(lambda: second.elector.last_error == "" and scans(first) >= 5)
    assert first.elector.leading and not second.elector.leading
    assert scans(second) == 0
    first.stop()  # releases the Lease; the other replica takes over and reads the event back
    wait_until(lambda: scans(second) >= 5, what="passes by the new leader")
    assert (
        stub.get("leases", "sidecred-events", WEBHOOK_NAMESPACE)["spec"]["holderIdentity"]
        == second.elector.identity
    )
    assert len(events(stub, UNAVAILABLE)) == 1


def test_without_rbac_to_list_events_the_reporter_still_reports(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    forbidden = status_object(
        403, "Forbidden", 'events is forbidden: cannot list resource "events"'
    )
    stub.route("GET", "/api/v1/events", lambda _: json_response(403, forbidden), counter="events.forbidden")  # fmt: skip
    reporter = start_scanning(reporters())
    reporter.scan_once()
    assert stub.requests["events.forbidden"] == 1
    assert len(events(stub, UNAVAILABLE)) == 1


def test_a_replica_without_the_lease_posts_nothing(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    stub = failing.stub
    holder, other = reporters("webhook-0"), start_scanning(reporters("webhook-1"))
    assert holder.elector.step()
    other.scan_once()  # renews (tries to) before reading: the Lease is held, so it stops
    assert not other.elector.leading
    assert events(stub, UNAVAILABLE) == [] and stub.requests["pods.proxy"] == 0


def _take_lease(stub: KubeApiStub, holder: str) -> None:
    """Another replica holds the Lease, freshly renewed (as after a missed renewal)."""
    lease = stub.get("leases", "sidecred-events", WEBHOOK_NAMESPACE)
    spec = dict(lease["spec"], holderIdentity=holder, renewTime=micro_time(time.time()))
    stub.put("leases", {"metadata": lease["metadata"], "spec": spec})


def test_losing_the_lease_stops_the_pod_watch_and_clears_the_gauges(
    failing: Failing, reporters: Callable[..., EventReporter]
) -> None:
    """A follower keeps no pod watch (a second copy of every injected pod) and exports no
    not-ready gauge (an alert that would fire from a replica that stopped looking)."""
    stub = failing.stub
    reporter = reporters(scan_interval=0.05, retry_period=0.05)
    registry = reporter.metrics.registry
    reporter.start()
    wait_until(lambda: events(stub, UNAVAILABLE), what="the first event")
    wait_until(lambda: registry.get_sample_value("sidecred_sidecars_not_ready", {"code": "AccessDenied"}) == 1)  # fmt: skip
    assert reporter.pods.running and reporter.pods.objects()
    watches = stub.requests["pods.watch"]
    _take_lease(stub, "webhook-9")
    wait_until(lambda: not reporter.pods.running, what="the pod watch to stop")
    assert registry.get_sample_value("sidecred_event_reporter_leader") == 0
    assert (
        registry.get_sample_value("sidecred_sidecars_not_ready", {"code": "AccessDenied"}) is None
    )
    assert reporter.pods.objects() == [] and not reporter.pods.synced and reporter.last == {}
    # Still following for three more rounds: no pod listed, watched or read meanwhile.
    passes, lists, reads = scans(reporter), stub.requests["pods.list"], stub.requests["pods.proxy"]
    rounds = stub.requests["leases.get"]
    wait_until(lambda: stub.requests["leases.get"] >= rounds + 3, what="three follower rounds")
    assert (scans(reporter), stub.requests["pods.list"]) == (passes, lists)
    assert stub.requests["pods.watch"] == watches and stub.requests["pods.proxy"] == reads
    # The Lease comes back (the other holder released it): the watch starts again, the
    # gauge returns, and the event posted in the first term is read back, not repeated.
    _take_lease(stub, "")
    wait_until(lambda: scans(reporter) >= passes + 2, what="passes in the second term")
    assert reporter.pods.running and reporter.pods.synced
    assert registry.get_sample_value("sidecred_sidecars_not_ready", {"code": "AccessDenied"}) == 1
    assert len(events(stub, UNAVAILABLE)) == 1


BACKUP_ARN = "arn:aws:iam::123456789012:role/shop-backup"


def refuse_backup(params: dict[str, str]) -> tuple[int, str]:
    """STS that answers the pod's role and refuses backup's own."""
    if params.get("RoleArn") == BACKUP_ARN:
        return access_denied(params)
    return answer_normally(params)


def test_an_event_names_the_container_whose_own_role_is_refused(
    tmp_path: Path,
    stub: KubeApiStub,
    scripted_sts_factory: Callable[..., ScriptedSts],
    sidecar_factory: Callable[..., SidecarProcess],
    reporters: Callable[..., EventReporter],
) -> None:
    """A real sidecar serving the pod's role and backup's (the webhook's own env for a pod
    with sidecred.dev/container-roles): STS refuses only backup's, and the Warning names
    backup and its role, not the pod's."""
    sts = scripted_sts_factory(refuse_backup)
    roles = {"sidecred.dev/container-roles": json.dumps({"backup": BACKUP_ARN})}
    env = sidecar_env(tmp_path, sts.url, annotations=roles, containers=("app", "backup"))
    sidecar = sidecar_factory(env)
    wait_until(
        lambda: (
            "AccessDenied" in (body := sidecar.readyz()[1]) and "CredentialsNotReady" not in body
        ),
        what="backup's refusal, with the pod's role held",
    )
    pod = injected_pod(sidecar, containers=("app", "backup"), annotations=roles)
    stub.put("pods", pod)
    reporter = start_scanning(reporters())
    reporter.scan_once()
    [event] = events(stub, UNAVAILABLE)
    assert event["message"] == (
        f'sidecar cannot get credentials for the own role "{BACKUP_ARN}" of container "backup": '
        f"AccessDenied: {STS_MESSAGE}"
    )
