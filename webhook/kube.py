"""The webhook's only Kubernetes API access: a watch-backed namespace cache.

A background thread lists namespaces, then watches from the list's
resourceVersion, applying ADDED/MODIFIED/DELETED events and following
BOOKMARKs. A 410 Gone relists; a broken stream reconnects from the last
resourceVersion after a capped, jittered backoff. Objects are kept as the
plain JSON dicts the API server sent (never typed models, which drop fields).

`get(name)` answers from the cache without an API call. On a miss it reads
the namespace directly and caches it, because a namespace created a moment
before its first pod may not have reached the watch yet. If that read fails
the lookup says why, and the caller fails closed.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

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


@dataclass(frozen=True)
class NamespaceLookup:
    """A namespace as a plain dict, or None with `error` saying why."""

    namespace: dict | None
    source: str  # cache | api | not-found | unavailable
    error: str = ""


def next_backoff(previous: float, *, rand: Callable[[], float] = random.random) -> float:
    """Double the delay up to the cap, then spread it by ±25% so replicas don't reconnect in lockstep."""
    base = min(max(previous * 2, BACKOFF_INITIAL_SECONDS), BACKOFF_MAX_SECONDS)
    return base * (0.75 + 0.5 * rand())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}".strip()
    return f"{type(exc).__name__}: {exc}"


class NamespaceCache:
    def __init__(
        self,
        api: client.CoreV1Api,
        *,
        record_api_call: Callable[[str, str], None] | None = None,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        self._api = api
        self._record = record_api_call or (lambda verb, result: None)
        self._watch_timeout = watch_timeout_seconds
        self._lock = threading.Lock()
        self._store: dict[str, dict] = {}
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self.last_error = ""
        # Calls made, by verb (list, watch, get): the proof that warm admissions make none.
        self.api_calls: collections.Counter[str] = collections.Counter()

    # --- lifecycle -----------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """True once the first list has loaded; stays true while the watch reconnects,
        because the cached policies remain the best answer and misses still fail closed."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="namespace-cache", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # shuts the stream's socket, waking the blocked read
        if self._thread is not None:
            self._thread.join(timeout)

    # --- lookups -------------------------------------------------------------------
    def cached(self, name: str) -> dict | None:
        with self._lock:
            return self._store.get(name)

    def get(self, name: str) -> NamespaceLookup:
        found = self.cached(name)
        if found is not None:
            return NamespaceLookup(found, CACHE)
        try:
            response = self._call(
                "get", self._api.read_namespace, name, _request_timeout=GET_TIMEOUT
            )
            obj = json.loads(response.data)
        except ApiException as exc:
            if exc.status == 404:
                return NamespaceLookup(None, NOT_FOUND, f'namespace "{name}" not found')
            return NamespaceLookup(
                None,
                UNAVAILABLE,
                f'Kubernetes API error reading namespace "{name}": {_describe(exc)}',
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            return NamespaceLookup(
                None,
                UNAVAILABLE,
                f'Kubernetes API unreachable reading namespace "{name}": {_describe(exc)}',
            )
        with self._lock:
            # A watch event may have arrived meanwhile; it is at least as new.
            obj = self._store.setdefault(name, obj)
        return NamespaceLookup(obj, FETCHED)

    # --- list and watch ------------------------------------------------------------
    def _call(self, verb: str, func: Callable, *args: object, **kwargs: object):
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

    def _relist(self) -> str:
        response = self._call("list", self._api.list_namespace, _request_timeout=LIST_TIMEOUT)
        body = json.loads(response.data)
        store = {item["metadata"]["name"]: item for item in body.get("items") or []}
        with self._lock:
            self._store = store
        self._synced.set()
        log.info("namespace cache synced: %d namespaces", len(store))
        return str(body["metadata"]["resourceVersion"])

    def _watch_from(self, resource_version: str) -> tuple[str, int]:
        """Apply events until the stream ends; return the last resourceVersion and the event count."""
        self._watch = watch.Watch()
        self.api_calls["watch"] += 1
        self._record("watch", "ok")
        stream = self._watch.stream(
            self._api.list_namespace,
            resource_version=resource_version,
            timeout_seconds=self._watch_timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(GET_TIMEOUT[0], self._watch_timeout + WATCH_READ_SLACK_SECONDS),
        )
        events = 0
        for event in stream:
            events += 1
            obj = event["raw_object"]
            metadata = obj.get("metadata") or {}
            kind = event["type"]
            if kind in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._store[metadata["name"]] = obj
            elif kind == "DELETED":
                with self._lock:
                    self._store.pop(metadata["name"], None)
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
                    log.info("namespace watch expired (410 Gone); relisting")
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
                    "namespace watch failed (%s); retrying in %.1fs", self.last_error, delay
                )
            self._stopping.wait(delay)
