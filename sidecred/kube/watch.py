"""Kubernetes API access for sidecred's servers: watch-backed object caches.

`WatchCache` lists one resource (optionally by label selector), then watches
from the list's resourceVersion, applying ADDED/MODIFIED/DELETED events and
following BOOKMARKs. A 410 Gone relists; a broken stream reconnects from the
last resourceVersion after a capped, jittered backoff. Objects are kept as the
plain JSON dicts the API server sent (never typed models, which drop fields).

A lookup answers from the cache without an API call. On a miss it reads the
object directly and caches it, because an object created a moment before it
is first asked about may not have reached the watch yet. If that read fails
the lookup says why, and the caller fails closed. An object outside the label
selector is answered but never cached: the watch would not report its deletion.
What misses may cost (a rate budget for those reads, a bounded memory of names
found missing) is `kube.miss_budget`'s.

`on_removed(key, uid)` is told of every object that leaves the cache (deleted,
leaving the selector, or missing from a relist), so its owner can drop what it
holds for that uid at once.

`NamespaceCache` (the webhook's and the broker's namespace policies) and
`PodCache` (sidecred's injected pods, by label) are the two instances.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sidecred.kube.miss_budget import (
    NOT_FOUND_MAX_ENTRIES,
    NOT_FOUND_TTL_SECONDS,
    MissBudget,
    RecentMisses,
)
from sidecred.pods.annotations import INJECTED_LABEL

log = logging.getLogger(__name__)

# Server-side watch timeout: the stream ends this often and is reopened from the
# last resourceVersion, which also detects half-open connections.
WATCH_TIMEOUT_SECONDS = 240
# Client read timeout for a watch: longer than the server-side timeout.
WATCH_READ_SLACK_SECONDS = 30
# A direct GET runs inside an admission request with a short webhook timeout.
GET_TIMEOUT = (2.0, 3.0)  # (connect, read) seconds
LIST_TIMEOUT = (5.0, 30.0)
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0

CACHE = "cache"
FETCHED = "api"
NOT_FOUND = "not-found"
UNAVAILABLE = "unavailable"
THROTTLED = "throttled"  # not cached, and the miss budget allows no read now


@dataclass(frozen=True)
class Lookup:
    """An object as a plain dict, or None with `error` saying why."""

    object: dict[str, Any] | None
    source: str  # cache | api | not-found | unavailable | throttled
    error: str = ""


class NamespaceSource(Protocol):
    """Namespaces by name, as the webhook and the broker read them (NamespaceCache)."""

    last_error: str

    @property
    def synced(self) -> bool: ...

    def get(self, name: str) -> Lookup: ...


# Only sidecred's own pods are watched: every pod the webhook injects carries this label.
INJECTED_POD_SELECTOR = f"{INJECTED_LABEL}=true"


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether `labels` match an equality-based selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def next_backoff(previous: float, *, rand: Callable[[], float] = random.random) -> float:
    """Double the delay up to the cap, then spread it by ±25% so replicas don't reconnect in lockstep."""
    base = min(max(previous * 2, BACKOFF_INITIAL_SECONDS), BACKOFF_MAX_SECONDS)
    return base * (0.75 + 0.5 * rand())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}".strip()
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Flight:
    """One GET in progress; callers asking for the same key meanwhile wait for its result."""

    done: threading.Event = field(default_factory=threading.Event)
    result: Lookup | None = None


class WatchCache:
    """A watch-backed cache of one resource kind, keyed by (namespace, name)."""

    def __init__(
        self,
        kind: str,
        list_func: Callable[..., Any],
        read_func: Callable[..., object],
        *,
        label_selector: str = "",
        record_api_call: Callable[[str, str], None] | None = None,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        remember_missing: bool = False,
        miss_budget: MissBudget | None = None,
        on_removed: Callable[[Key, str], None] | None = None,
    ) -> None:
        self.kind = kind  # "namespace", "pod": for messages and logs
        self._list_func = list_func
        self._read_func = read_func
        self._selector = {"label_selector": label_selector} if label_selector else {}
        self._on_removed = on_removed
        self._record = record_api_call or (lambda verb, result: None)
        self._watch_timeout = watch_timeout_seconds
        self._lock = threading.Lock()
        self._store: dict[Key, dict[str, Any]] = {}
        self._clock = clock
        # Recent 404s, the rate budget for reads of uncached keys, and the GET in
        # flight per key that others wait on.
        self._missing = (
            RecentMisses(NOT_FOUND_TTL_SECONDS, NOT_FOUND_MAX_ENTRIES, clock=clock)
            if remember_missing
            else None
        )
        self._miss_budget = miss_budget
        self._inflight: dict[Key, _Flight] = {}
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self.last_error = ""
        # Calls made, by verb (list, watch, get): the proof that warm lookups make none.
        self.api_calls: collections.Counter[str] = collections.Counter()

    # --- lifecycle -----------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """True once the first list has loaded; stays true while the watch reconnects,
        because the cached objects remain the best answer and misses still fail closed."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def running(self) -> bool:
        """True while the list/watch thread runs (also while a stop() winds it down)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start listing and watching; again after stop(), from an empty cache."""
        if self.running:
            raise RuntimeError(f"the {self.kind} cache is already running")
        self._stopping.clear()
        name = f"{self.kind}-cache"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, forget: bool = False) -> None:
        """End the watch; with `forget`, drop every cached object too, each reported to
        `on_removed` (not synced until a later start() has listed again)."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # shuts the stream's socket, waking the blocked read
        if self._thread is not None:
            self._thread.join(timeout)
        if forget:
            with self._lock:
                gone, self._store = list(self._store.items()), {}
                if self._missing is not None:
                    self._missing.clear()
            self._synced.clear()
            self._removed(gone)

    # --- lookups -------------------------------------------------------------------
    def cached_key(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._store.get(key)

    def objects(self) -> list[dict[str, Any]]:
        """Every cached object (a snapshot)."""
        with self._lock:
            return list(self._store.values())

    def _remember_missing(self, key: Key) -> None:
        if self._missing is not None:
            with self._lock:
                self._missing.add(key)

    def lookup(self, key: Key) -> Lookup:
        """From the cache; else from one GET per key at a time, shared by concurrent callers."""
        shown = f'{self.kind} "{key[0]}/{key[1]}"' if key[0] else f'{self.kind} "{key[1]}"'
        with self._lock:
            found = self._store.get(key)
            if found is not None:
                return Lookup(found, CACHE)
            if self._missing is not None and self._missing.recent(key):
                return Lookup(None, NOT_FOUND, f"{shown} not found")
            flight = self._inflight.get(key)
            leader = flight is None
            if flight is None:
                if self._miss_budget is not None and not self._miss_budget.try_spend():
                    return Lookup(None, THROTTLED, f"{shown} is not known yet; retry")
                flight = self._inflight[key] = _Flight()
        if not leader:
            flight.done.wait(GET_TIMEOUT[0] + GET_TIMEOUT[1] + 1.0)
            return flight.result or Lookup(None, UNAVAILABLE, f"{shown}: lookup timed out")
        try:
            flight.result = self._get(key, shown)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            flight.done.set()
        return flight.result

    def _get(self, key: Key, shown: str) -> Lookup:
        try:
            obj = json.loads(self._call("get", self._read_func, key).data)
        except ApiException as exc:
            if exc.status == 404:
                self._remember_missing(key)
                return Lookup(None, NOT_FOUND, f"{shown} not found")
            message = f"Kubernetes API error reading {shown}: {_describe(exc)}"
            return Lookup(None, UNAVAILABLE, message)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            message = f"Kubernetes API unreachable reading {shown}: {_describe(exc)}"
            return Lookup(None, UNAVAILABLE, message)
        if not self._selected(obj):
            return Lookup(obj, FETCHED)
        with self._lock:
            # A watch event may have arrived meanwhile; it is at least as new.
            obj = self._store.setdefault(key, obj)
        return Lookup(obj, FETCHED)

    # --- leaving the cache -----------------------------------------------------------
    def _selected(self, obj: dict[str, Any]) -> bool:
        """Whether the watch would report on `obj`: only then may the cache hold it."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return selector_matches(self._selector.get("label_selector", ""), labels)

    def _removed(self, gone: list[tuple[Key, dict[str, Any]]]) -> None:
        if self._on_removed is None:
            return
        for key, obj in gone:
            try:
                self._on_removed(key, str((obj.get("metadata") or {}).get("uid") or ""))
            except Exception:
                log.exception("%s cache: on_removed failed for %s", self.kind, key)

    # --- list and watch ------------------------------------------------------------
    def _call(self, verb: str, func: Callable[..., Any], *args: object, **kwargs: object) -> Any:
        self.api_calls[verb] += 1
        try:
            result = func(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            self._record(verb, str(exc.status))
            raise
        except Exception:
            self._record(verb, "error")
            raise
        self._record(verb, "ok")
        return result

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        metadata = obj.get("metadata") or {}
        return (metadata.get("namespace") or "", metadata["name"])

    def _relist(self) -> str:
        response = self._call(
            "list", self._list_func, _request_timeout=LIST_TIMEOUT, **self._selector
        )
        body = json.loads(response.data)
        store = {self._key(item): item for item in body.get("items") or []}
        with self._lock:
            old, self._store = self._store, store
        uids = {(key, (obj.get("metadata") or {}).get("uid")) for key, obj in store.items()}
        self._removed(
            [
                (k, o)
                for k, o in old.items()
                if (k, (o.get("metadata") or {}).get("uid")) not in uids
            ]
        )
        self._synced.set()
        log.info("%s cache synced: %d objects", self.kind, len(store))
        return str(body["metadata"]["resourceVersion"])

    def _watch_from(self, resource_version: str) -> tuple[str, int]:
        """Apply events until the stream ends; return the last resourceVersion and the event count."""
        self._watch = watch.Watch()
        self.api_calls["watch"] += 1
        self._record("watch", "ok")
        stream = self._watch.stream(
            self._list_func,
            resource_version=resource_version,
            timeout_seconds=self._watch_timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(GET_TIMEOUT[0], self._watch_timeout + WATCH_READ_SLACK_SECONDS),
            **self._selector,
        )
        events = 0
        for event in stream:
            events += 1
            obj = event["raw_object"]
            metadata = obj.get("metadata") or {}
            kind = event["type"]
            if kind in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._store[self._key(obj)] = obj
                    if self._missing is not None:
                        self._missing.discard(self._key(obj))
            elif kind == "DELETED":
                with self._lock:
                    self._store.pop(self._key(obj), None)
                self._removed([(self._key(obj), obj)])
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            if self._stopping.is_set():
                break
        return resource_version, events

    def _run(self) -> None:
        resource_version: str | None = None
        delay = 0.0
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                resource_version, events = self._watch_from(resource_version)
                self.last_error = ""
                if events:
                    delay = 0.0
                    continue
                # A stream that ended without a single event (a server-side timeout, or a
                # proxy closing it at once) is reopened after a backoff, never in a hot loop.
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s watch expired (410 Gone); relisting", self.kind)
                    resource_version = None
                    continue
                self.last_error = _describe(exc)
            except Exception as exc:  # the stream broke; reconnect below
                self.last_error = _describe(exc)
            if self._stopping.is_set():
                break
            delay = next_backoff(delay)
            if self.last_error:
                log.warning(
                    "%s watch failed (%s); retrying in %.1fs", self.kind, self.last_error, delay
                )
            self._stopping.wait(delay)


class NamespaceCache(WatchCache):
    """Every namespace (their policy annotations decide admission and issuance)."""

    def __init__(self, api: client.CoreV1Api, **kwargs: Any) -> None:
        def read(key: Key, **kwargs: object) -> object:
            return api.read_namespace(key[1], _request_timeout=GET_TIMEOUT, **kwargs)

        kwargs.setdefault("remember_missing", True)
        # Any caller of the webhook can name namespaces that do not exist.
        kwargs.setdefault("miss_budget", MissBudget(clock=kwargs.get("clock", time.monotonic)))
        super().__init__("namespace", api.list_namespace, read, **kwargs)

    def cached(self, name: str) -> dict[str, Any] | None:
        return self.cached_key(("", name))

    def get(self, name: str) -> Lookup:
        return self.lookup(("", name))


class PodCache(WatchCache):
    """sidecred's injected pods in every namespace, selected by label (never the whole cluster)."""

    def __init__(self, api: client.CoreV1Api, **kwargs: Any) -> None:
        def read(key: Key, **kwargs: object) -> object:
            return api.read_namespaced_pod(key[1], key[0], _request_timeout=GET_TIMEOUT, **kwargs)

        kwargs.setdefault("label_selector", INJECTED_POD_SELECTOR)
        super().__init__("pod", api.list_pod_for_all_namespaces, read, **kwargs)

    def cached(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod if the watch holds it; never an API call."""
        return self.cached_key((namespace, name))

    def get(self, namespace: str, name: str) -> Lookup:
        return self.lookup((namespace, name))
