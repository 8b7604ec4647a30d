"""Kubernetes API access for sidecred's servers: watch-backed caches of projections.

`WatchCache` lists one resource (optionally by label selector) page by page
(`limit` and `continue`), then watches from the list's resourceVersion, applying
ADDED/MODIFIED/DELETED events and following BOOKMARKs. A 410 Gone, on the watch or
between two pages of a list, lists again from the start; a broken stream
reconnects from the last resourceVersion after a capped, jittered backoff.

Each object is projected as it arrives (sidecred.kube.projection): the cache
keeps what decisions read, never the object, so it holds well under a kilobyte
per pod, and a LIST holds one page's text at a time, its items parsed one by one
(sidecred.kube.list_items) so other threads, the event loop among them, run between.
A relist updates the live cache page by page and drops, at its end, what no page
named: lookups are answered throughout.
The watch stream is read as JSON lines, never deserialised into typed models.

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
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sidecred.kube.list_items import list_items
from sidecred.kube.miss_budget import (
    NOT_FOUND_MAX_ENTRIES,
    NOT_FOUND_TTL_SECONDS,
    MissBudget,
    RecentMisses,
)
from sidecred.kube.projection import PodProjector, Projection, project_namespace
from sidecred.pods.annotations import INJECTED_LABEL
from sidecred.serving.background import Background

log = logging.getLogger(__name__)

# Server-side watch timeout: the stream ends this often and is reopened from the
# last resourceVersion, which also detects half-open connections.
WATCH_TIMEOUT_SECONDS = 240
# Client read timeout for a watch: longer than the server-side timeout.
WATCH_READ_SLACK_SECONDS = 30
# A direct GET runs inside an admission request with a short webhook timeout.
GET_TIMEOUT = (2.0, 3.0)  # (connect, read) seconds
LIST_TIMEOUT = (5.0, 30.0)
# Objects per LIST page (client-go's default): the transient peak of a list is one
# page's text (about 6 MB for large pods); its items are parsed and projected one by
# one (sidecred.kube.list_items), so the event loop is never held for a whole page.
LIST_PAGE_SIZE = 500
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0

CACHE = "cache"
FETCHED = "api"
NOT_FOUND = "not-found"
UNAVAILABLE = "unavailable"
THROTTLED = "throttled"  # not cached, and the miss budget allows no read now


@dataclass(frozen=True)
class Lookup:
    """An object (a cache's projection, or a plain dict), or None with `error` saying why."""

    object: Mapping[str, Any] | None
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


def _lines(response: Any) -> Iterator[bytes]:
    """The non-empty lines of a chunked watch response, as they arrive."""
    pending: list[bytes] = []  # a line's chunks so far: joined once, when its end arrives
    for chunk in response.stream(amt=None, decode_content=False):
        pending.append(chunk)
        if b"\n" not in chunk:
            continue
        *lines, rest = b"".join(pending).split(b"\n")
        pending = [rest]
        for line in lines:
            if line.strip():
                yield line
    tail = b"".join(pending)
    if tail.strip():
        yield tail


def _uid_of(obj: Mapping[str, Any]) -> str:
    """An object's uid: a pod projection's own, else metadata.uid ("" for none)."""
    uid = getattr(obj, "uid", None)
    if isinstance(uid, str):
        return uid
    metadata = obj.get("metadata")
    return str(metadata.get("uid") or "") if isinstance(metadata, Mapping) else ""


def _expired(status: Mapping[str, Any]) -> ApiException:
    """The ApiException for an ERROR event (a 410 Gone when the resourceVersion is too old)."""
    reason = f"{status.get('reason', '')}: {status.get('message', '')}"
    return ApiException(status=int(status.get("code") or 500), reason=reason)


class WatchCache:
    """A watch-backed cache of one resource kind's projections, keyed by (namespace, name)."""

    def __init__(
        self,
        kind: str,
        list_func: Callable[..., Any],
        read_func: Callable[..., object],
        project: Callable[[Mapping[str, Any]], Projection],
        *,
        label_selector: str = "",
        record_api_call: Callable[[str, str], None] | None = None,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        page_size: int = LIST_PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        remember_missing: bool = False,
        miss_budget: MissBudget | None = None,
        on_removed: Callable[[Key, str], None] | None = None,
    ) -> None:
        self.kind = kind  # "namespace", "pod": for messages and logs
        self._list_func = list_func
        self._read_func = read_func
        self._project = project
        self._selector = {"label_selector": label_selector} if label_selector else {}
        self._on_removed = on_removed
        self._record = record_api_call or (lambda verb, result: None)
        self._watch_timeout = watch_timeout_seconds
        self._page_size = page_size
        self._lock = threading.Lock()
        self._store: dict[Key, Projection] = {}
        # While a list runs: keys held before it that no page has named yet.
        self._unseen: set[Key] | None = None
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
        self._background = Background(f"{kind}-cache", self._run)
        self._response: Any = None  # the open watch stream, shut by stop()
        self.last_error = ""
        self.listed = 0  # objects the list in progress (or the last one) has loaded
        # Calls made, by verb (list, watch, get): the proof that warm lookups make none.
        self.api_calls: collections.Counter[str] = collections.Counter()

    # --- lifecycle -----------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """True once the first list has loaded; stays true while the watch reconnects or a
        relist runs, because the cached objects remain the best answer and misses still
        fail closed."""
        return self._synced.is_set()

    @property
    def progress(self) -> str:
        """Why the cache is not synced yet, for /readyz."""
        if self.last_error:
            return self.last_error
        return (
            f"listing ({self.listed} {self.kind}s so far)"
            if self.listed
            else "waiting for the first list"
        )

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def running(self) -> bool:
        """True while the list/watch thread runs (also while a stop() winds it down)."""
        return self._background.running

    def start(self) -> None:
        """Start listing and watching; again after stop(), from an empty cache."""
        if self.running:
            raise RuntimeError(f"the {self.kind} cache is already running")
        self._background.start()

    def stop(self, timeout: float = 5.0, *, forget: bool = False) -> None:
        """End the watch; with `forget`, drop every cached object too, each reported to
        `on_removed` (not synced until a later start() has listed again)."""
        self._background.stopping.set()
        self._shut_stream()  # wakes the read blocked on the stream, so the thread sees it
        self._background.stop(timeout)
        if forget:
            with self._lock:
                gone = [(key, _uid_of(value)) for key, value in self._store.items()]
                self._store = {}
                if self._missing is not None:
                    self._missing.clear()
            self._synced.clear()
            self._removed(gone)

    def _shut_stream(self) -> None:
        """Shut the watch stream's socket, waking the read blocked on it."""
        response = self._response
        connection = getattr(response, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    # --- lookups -------------------------------------------------------------------
    def cached_key(self, key: Key) -> Projection | None:
        with self._lock:
            return self._store.get(key)

    def objects(self) -> list[Projection]:
        """Every cached projection (a snapshot)."""
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
            raw = json.loads(self._call("get", self._read_func, key).data)
        except ApiException as exc:
            if exc.status == 404:
                self._remember_missing(key)
                return Lookup(None, NOT_FOUND, f"{shown} not found")
            message = f"Kubernetes API error reading {shown}: {_describe(exc)}"
            return Lookup(None, UNAVAILABLE, message)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            message = f"Kubernetes API unreachable reading {shown}: {_describe(exc)}"
            return Lookup(None, UNAVAILABLE, message)
        obj = self._project(raw)
        if not self._selected(raw):  # judged on the object: projections keep no labels
            return Lookup(obj, FETCHED)
        with self._lock:
            # A watch event may have arrived meanwhile; it is at least as new.
            obj = self._store.setdefault(key, obj)
            if self._unseen is not None:
                self._unseen.discard(key)  # as new as the list in progress: keep it
        return Lookup(obj, FETCHED)

    # --- leaving the cache -----------------------------------------------------------
    def _selected(self, obj: dict[str, Any]) -> bool:
        """Whether the watch would report on `obj`: only then may the cache hold it."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return selector_matches(self._selector.get("label_selector", ""), labels)

    def _removed(self, gone: list[tuple[Key, str]]) -> None:
        """Tell `on_removed` of each (key, uid) that left the cache."""
        if self._on_removed is None:
            return
        for key, uid in gone:
            try:
                self._on_removed(key, uid)
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
    def _key(obj: Mapping[str, Any]) -> Key:
        metadata = obj.get("metadata") or {}
        # The namespace string is shared with the projection's (and every other key's).
        return (sys.intern(str(metadata.get("namespace") or "")), metadata["name"])

    def _list_page(self, token: str) -> tuple[list[tuple[Key, Projection]], str, str]:
        """One LIST page, projected: (entries, continue token, resourceVersion)."""
        kwargs: dict[str, Any] = {"limit": self._page_size, **self._selector}
        if token:
            kwargs["_continue"] = token
        response = self._call("list", self._list_func, _request_timeout=LIST_TIMEOUT, **kwargs)
        try:
            # read(), not .data, which would keep the page's bytes cached on the response
            text = response.read().decode("utf-8")
        finally:
            response.release_conn()
        fields: dict[str, Any] = {}
        entries = [(self._key(item), self._project(item)) for item in list_items(text, fields)]
        metadata = fields.get("metadata") or {}
        return entries, str(metadata.get("continue") or ""), str(metadata["resourceVersion"])

    def _relist(self) -> str:
        """List every page into the live store; drop at the end what no page named.

        Returns the list's resourceVersion (the first page's: later pages are of
        the same snapshot, and the watch replays whatever changed since).
        An ApiException 410 means the snapshot expired between pages.
        """
        with self._lock:
            self._unseen = set(self._store)
        self.listed = 0
        token, version = "", ""
        try:
            while True:
                entries, token, page_version = self._list_page(token)
                version = version or page_version
                self._removed(self._store_page(entries))
                self.listed += len(entries)
                if not token:
                    break
                if self._background.stopping.is_set():
                    return version
            with self._lock:
                gone = [(k, _uid_of(self._store.pop(k))) for k in self._unseen if k in self._store]
                held = len(self._store)
        finally:
            with self._lock:
                self._unseen = None
        self._removed(gone)
        self._synced.set()
        log.info("%s cache synced: %d objects", self.kind, held)
        return version

    def _store_page(self, entries: list[tuple[Key, Projection]]) -> list[tuple[Key, str]]:
        """Put a page's projections in the live store; (key, uid) of those replaced by
        another object of the same name (deleted and created again while unwatched)."""
        replaced = []
        with self._lock:
            assert self._unseen is not None
            for key, value in entries:
                old = self._store.get(key)
                if old is not None and _uid_of(old) != _uid_of(value):
                    replaced.append((key, _uid_of(old)))
                self._store[key] = value
                self._unseen.discard(key)
                if self._missing is not None:
                    self._missing.discard(key)
        return replaced

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            key, value = self._key(obj), self._project(obj)
            with self._lock:
                self._store[key] = value
                if self._missing is not None:
                    self._missing.discard(key)
        elif kind == "DELETED":
            key = self._key(obj)
            with self._lock:
                self._store.pop(key, None)
            self._removed([(key, _uid_of(obj))])

    def _watch_from(self, resource_version: str) -> tuple[str, int]:
        """Apply events until the stream ends; return the last resourceVersion and the event count."""
        response = self._call(
            "watch",
            self._list_func,
            watch=True,
            resource_version=resource_version,
            timeout_seconds=self._watch_timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(GET_TIMEOUT[0], self._watch_timeout + WATCH_READ_SLACK_SECONDS),
            **self._selector,
        )
        self._response = response
        events = 0
        try:
            if self._background.stopping.is_set():
                return resource_version, events
            for line in _lines(response):
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise _expired(obj)
                events += 1
                self._apply(event.get("type"), obj)
                metadata = obj.get("metadata") or {}
                resource_version = str(metadata.get("resourceVersion") or resource_version)
                if self._background.stopping.is_set():
                    break
        finally:
            self._response = None
            response.release_conn()
        return resource_version, events

    def _run(self) -> None:
        resource_version: str | None = None
        delay = 0.0
        expired = 0  # 410s in a row: the first relists at once, later ones back off
        while not self._background.stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                resource_version, events = self._watch_from(resource_version)
                self.last_error = ""
                expired = 0
                if events:
                    delay = 0.0
                    continue
                # A stream that ended without a single event (a server-side timeout, or a
                # proxy closing it at once) is reopened after a backoff, never in a hot loop.
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s list or watch expired (410 Gone); listing again", self.kind)
                    resource_version = None
                    expired += 1
                    if expired == 1:
                        continue
                self.last_error = _describe(exc)
            except Exception as exc:  # the stream broke; reconnect below
                self.last_error = _describe(exc)
            if self._background.stopping.is_set():
                break
            delay = next_backoff(delay)
            if self.last_error:
                log.warning(
                    "%s watch failed (%s); retrying in %.1fs", self.kind, self.last_error, delay
                )
            self._background.stopping.wait(delay)


class NamespaceCache(WatchCache):
    """Every namespace (their policy annotations decide admission and issuance)."""

    def __init__(self, api: client.CoreV1Api, **kwargs: Any) -> None:
        def read(key: Key, **kwargs: object) -> object:
            return api.read_namespace(key[1], _request_timeout=GET_TIMEOUT, **kwargs)

        kwargs.setdefault("remember_missing", True)
        # Any caller of the webhook can name namespaces that do not exist.
        kwargs.setdefault("miss_budget", MissBudget(clock=kwargs.get("clock", time.monotonic)))
        super().__init__("namespace", api.list_namespace, read, project_namespace, **kwargs)

    def cached(self, name: str) -> Projection | None:
        return self.cached_key(("", name))

    def get(self, name: str) -> Lookup:
        return self.lookup(("", name))


class PodCache(WatchCache):
    """sidecred's injected pods in every namespace, selected by label (never the whole cluster).

    `project` decides what is kept of each pod: the broker's also runs the
    canonical-sidecar check on the whole pod, once, as it arrives.
    """

    def __init__(
        self, api: client.CoreV1Api, project: PodProjector | None = None, **kwargs: Any
    ) -> None:
        def read(key: Key, **kwargs: object) -> object:
            return api.read_namespaced_pod(key[1], key[0], _request_timeout=GET_TIMEOUT, **kwargs)

        kwargs.setdefault("label_selector", INJECTED_POD_SELECTOR)
        super().__init__(
            "pod", api.list_pod_for_all_namespaces, read, project or PodProjector(), **kwargs
        )

    def cached(self, namespace: str, name: str) -> Projection | None:
        """The pod if the watch holds it; never an API call."""
        return self.cached_key((namespace, name))

    def get(self, namespace: str, name: str) -> Lookup:
        return self.lookup((namespace, name))
