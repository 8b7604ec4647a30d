"""Leader election on a `coordination.k8s.io/v1` Lease, so one webhook replica reports events.

The semantics are client-go's (and the `kubernetes` client's ConfigMap-based
`leaderelection`, which has no Lease lock and cannot be stopped or driven by an
injected clock): a candidate creates the Lease if there is none, the holder
renews `renewTime`, and another candidate takes the Lease over only once it has
seen the same record unchanged for `leaseDurationSeconds` by its *own* clock
(so clock skew between nodes does not matter). Every write carries the
resourceVersion that was read, so of two candidates writing at once the API
server accepts one and answers the other 409 Conflict.

A holder that cannot renew for `renew_deadline` seconds stops leading before its
Lease can expire for the others (`renew_deadline` < lease duration), so two
replicas never lead at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sidecred.kube.events import micro_time

log = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 15  # client-go's default
RENEW_DEADLINE_SECONDS = 10.0  # stop leading this long after the last successful renewal
RETRY_PERIOD_SECONDS = 2.0  # how often a candidate (or the holder) tries
API_TIMEOUT = (2.0, 5.0)

CREATE, RENEW, TAKE_OVER, FOLLOW = "create", "renew", "take-over", "follow"


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec, as read."""

    holder: str
    duration: int
    renew_time: str
    acquire_time: str = ""
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or LEASE_DURATION_SECONDS),
            renew_time=str(spec.get("renewTime") or ""),
            acquire_time=str(spec.get("acquireTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )


def lease_action(record: LeaseRecord | None, identity: str, observed_at: float, now: float) -> str:
    """What a candidate does next; `observed_at` is when it first saw `record` (its clock)."""
    if record is None:
        return CREATE
    if record.holder == identity:
        return RENEW
    if not record.holder or now >= observed_at + record.duration:
        return TAKE_OVER
    return FOLLOW


class LeaseElector:
    """One candidate. Call `step()` every RETRY_PERIOD_SECONDS; `leading` says whether to act."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: int = LEASE_DURATION_SECONDS,
        renew_deadline: float = RENEW_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.clock = clock
        self.on_change = on_change or (lambda leading: None)
        self.leading = False
        self.last_error = ""
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self.renewed_at = 0.0  # when the Lease was last written by this candidate (its clock)

    def _read(self) -> tuple[LeaseRecord | None, dict[str, Any] | None]:
        try:
            response = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise
        lease = json.loads(response.data)
        return LeaseRecord.from_lease(lease), lease

    def _write(
        self, action: str, record: LeaseRecord | None, lease: dict[str, Any] | None, now: float
    ) -> None:
        stamp = micro_time(now)
        keep = action == RENEW and record is not None
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration,
            "acquireTime": record.acquire_time if keep and record else stamp,
            "renewTime": stamp,
            "leaseTransitions": (record.transitions if record else 0) + (action == TAKE_OVER),
        }
        if action == CREATE:
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
            self.api.create_namespaced_lease(self.namespace, body, _request_timeout=API_TIMEOUT)
            return
        if lease is None:
            raise ValueError("no Lease was read to replace")
        # resourceVersion as read: a concurrent writer makes this a 409.
        body = {"metadata": lease["metadata"], "spec": spec}
        self.api.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=API_TIMEOUT
        )

    def step(self) -> bool:
        """One round: read the Lease, then create, renew, take over or follow. Returns `leading`."""
        now = self.clock()
        try:
            record, lease = self._read()
            if record != self._observed:
                self._observed, self._observed_at = record, now
            action = lease_action(record, self.identity, self._observed_at, now)
            if action != FOLLOW:
                self._write(action, record, lease, now)
                self.renewed_at = now
            self.last_error = ""
            self._set_leading(action != FOLLOW)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            lost = isinstance(exc, ApiException) and exc.status == 409
            self.last_error = f"HTTP {exc.status}" if isinstance(exc, ApiException) else str(exc)
            if lost or now - self.renewed_at > self.renew_deadline:
                self._set_leading(False)
        return self.leading

    def release(self) -> None:
        """Give the Lease up at shutdown (holder cleared) so another replica need not wait."""
        if not self.leading:
            return
        try:
            record, lease = self._read()
            if record is not None and lease is not None and record.holder == self.identity:
                spec = dict(lease.get("spec") or {}, holderIdentity=None, leaseDurationSeconds=1)
                self.api.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    {"metadata": lease["metadata"], "spec": spec},
                    _request_timeout=API_TIMEOUT,
                )
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
        self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info(
                "event reporter %s lease %s/%s",
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
                extra={"fields": {"identity": self.identity}},
            )
            self.on_change(leading)
