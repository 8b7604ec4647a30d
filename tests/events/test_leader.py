"""Leader election on a coordination.k8s.io Lease: the pure rule, then two electors against
the API stub with clocks the test controls (no waiting for a lease to expire)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from sidecred.dev.kube_stub import KubeApiStub
from sidecred.webhook.leader import (
    CREATE,
    FOLLOW,
    RENEW,
    TAKE_OVER,
    LeaseElector,
    LeaseRecord,
    lease_action,
)

NS, NAME = "sidecred-system", "sidecred-events"


@pytest.mark.parametrize(
    ("record", "observed_at", "now", "expected"),
    [
        (None, 0, 0, CREATE),
        (LeaseRecord("me", 15, "t"), 0, 100, RENEW),
        (LeaseRecord("other", 15, "t"), 100, 114.9, FOLLOW),
        (LeaseRecord("other", 15, "t"), 100, 115, TAKE_OVER),
        (LeaseRecord("", 15, "t"), 100, 100, TAKE_OVER),  # released
    ],
)
def test_lease_action(
    record: LeaseRecord | None, observed_at: float, now: float, expected: str
) -> None:
    assert lease_action(record, "me", observed_at, now) == expected


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    with KubeApiStub() as api:
        yield api


def elector(stub: KubeApiStub, identity: str, clock: Clock) -> LeaseElector:
    api = client.CoordinationV1Api(client.ApiClient(client.Configuration(host=stub.url)))
    return LeaseElector(api, NS, NAME, identity, lease_duration=15, clock=clock)


def holder(stub: KubeApiStub) -> str | None:
    lease = stub.get("leases", NAME, NS)
    return None if lease is None else lease["spec"]["holderIdentity"]


def test_one_leads_and_the_other_takes_over_only_after_expiry(stub: KubeApiStub) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(stub, "a", clock_a), elector(stub, "b", clock_b)
    assert a.step() and not b.step()
    assert holder(stub) == "a"
    acquired = stub.get("leases", NAME, NS)["spec"]["acquireTime"]
    clock_a.now += 5
    assert a.step()  # renews: renewTime moves, acquireTime stays
    spec = stub.get("leases", NAME, NS)["spec"]
    assert spec["acquireTime"] == acquired and spec["renewTime"] != acquired
    # b saw a new record at its +0; 14 s later by its own clock it still follows.
    clock_b.now += 14
    assert not b.step()
    # a stops renewing; 15 s after b last saw the record change, b takes over.
    clock_b.now += 15
    assert b.step() and holder(stub) == "b"
    assert stub.get("leases", NAME, NS)["spec"]["leaseTransitions"] == 1
    clock_a.now += 1  # a comes back within its renew deadline, reads b's lease, follows
    assert not a.step() and not a.leading


def test_a_stale_write_gets_409_and_does_not_lead(stub: KubeApiStub) -> None:
    clock = Clock()
    a, b = elector(stub, "a", clock), elector(stub, "b", clock)
    assert a.step() and not b.step()
    stale = b._read()  # b reads the lease now...
    clock.now += 20
    a.step()  # ...a renews in between...
    b._read = lambda: stale  # type: ignore[method-assign]  # ...b acts on what it read
    assert not b.step()
    assert b.last_error == "HTTP 409" and holder(stub) == "a"


def test_release_hands_over_at_once(stub: KubeApiStub) -> None:
    clock = Clock()
    changes: list[bool] = []
    a = elector(stub, "a", clock)
    a.on_change = changes.append
    b = elector(stub, "b", clock)
    assert a.step() and not b.step()
    a.release()
    assert not a.leading and changes == [True, False]
    assert b.step() and holder(stub) == "b"


def test_holder_that_cannot_renew_stops_leading_before_the_lease_expires(
    stub: KubeApiStub,
) -> None:
    clock = Clock()
    a = elector(stub, "a", clock)
    assert a.step()
    stub.stop()
    clock.now += 5
    assert a.step()  # within the renew deadline: keeps leading through a blip
    clock.now += 6  # 11 s since the last renewal > the 10 s deadline < the 15 s lease
    assert not a.step()
    assert a.last_error
