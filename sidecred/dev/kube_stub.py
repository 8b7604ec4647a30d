"""A small Kubernetes API server stand-in for tests and the demo.

It serves the real JSON shapes the `kubernetes` client expects for a table of
resources (namespaces, pods, events, configmaps, leases, webhook configurations):
lists with `metadata.resourceVersion`, label and field selectors and pagination
(`limit` and `continue`; a token older than the last compaction gets 410
Expired), a chunked watch stream of `{"type", "object"}` lines that stays open
and pushes events as the test changes objects, GETs with a real `Status` 404,
create (201, 409 when the name is taken), replace (409 on a stale
resourceVersion, which leader election relies on), delete, and an `ERROR` event
with code 410 when a watch asks for a compacted resourceVersion. A watch with a
label selector sends ADDED when an object starts matching it and DELETED when it
stops, as kube-apiserver does. Objects are stored as their JSON bytes, so a
cluster's worth of pods fits (`put_many` loads one). Endpoints that are not plain
storage (TokenReview, the service-account issuer's keys, the pod proxy) are added
by the caller with `route()`.

It can be stopped and restarted on the same port (the "API server went away"
case) and counts requests so tests can prove a warm cache makes none: for
namespaces under the keys `list`, `watch` and `get`; for every other resource
as `<plural>.<verb>` (for example `pods.get`, `events.create`).
"""

from __future__ import annotations

import bisect
import collections
import copy
import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sidecred.kube.watch import selector_matches

NAMESPACES_PATH = "/api/v1/namespaces"
# How often an idle watch stream looks at the stop flag; events wake it at once.
_WATCH_POLL_SECONDS = 0.2
_MAX_BODY = 4 << 20
_MAX_SNAPSHOTS = 64  # paginated lists in progress (their continue tokens)


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group_version: str  # "v1" or "<group>/<version>"
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


RESOURCES = {
    r.plural: r
    for r in (
        Resource("namespaces", "Namespace", "v1", namespaced=False),
        Resource("pods", "Pod", "v1", namespaced=True),
        Resource("events", "Event", "v1", namespaced=True),
        Resource("configmaps", "ConfigMap", "v1", namespaced=True),
        Resource("leases", "Lease", "coordination.k8s.io/v1", namespaced=True),
        Resource(
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            namespaced=False,
        ),
        Resource(
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            namespaced=False,
        ),
    )
}


@dataclass
class StubRequest:
    """What a `route()` handler sees of one request."""

    method: str
    path: str
    match: re.Match[str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class StubResponse:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[StubRequest], StubResponse]


def json_response(code: int, obj: object) -> StubResponse:
    return StubResponse(code, json.dumps(obj).encode())


def _is_true(value: str | None) -> bool:
    """Query booleans as the API server parses them (Go's strconv.ParseBool)."""
    return (value or "").lower() in ("1", "t", "true")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(
    code: int, reason: str, message: str, name: str | None = None, kind: str = "namespaces"
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name is not None:
        status["details"] = {"name": name, "kind": kind}
    return status


def _field_matches(selector: str, name: str, namespace: str | None) -> bool:
    """Field selectors on `metadata.name` and `metadata.namespace`, the ones used here."""
    fields = {"metadata.name": name, "metadata.namespace": namespace}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if (fields.get(key.strip()) == value.strip()) == negate:
            return False
    return True


@dataclass(frozen=True)
class _Stored:
    """One stored object: its JSON as a list item (no kind or apiVersion), and what
    selectors and writes read. Bytes, so a cluster's worth of pods fits in memory
    and a list page is joined, not re-serialised."""

    data: bytes
    namespace: str | None
    name: str
    labels: dict[str, str]
    uid: str
    created: str
    resource_version: str  # as written into `data`, for a PUT's optimistic-concurrency check


# (resourceVersion, plural, event type, object, its labels before a MODIFIED or None)
History = tuple[int, str, str, _Stored, dict[str, str] | None]


@dataclass
class _Target:
    """A parsed storage path: which resource, namespace, name and subresource."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None = None


def _parse_path(path: str) -> _Target | None:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        gv, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":  # GET /api/v1/namespaces/NAME
        return _Target(RESOURCES["namespaces"], None, rest[1])
    if not rest or len(rest) > 3:
        return None
    resource = RESOURCES.get(rest[0])
    if resource is None or resource.group_version != gv:
        return None
    if namespace is not None and not resource.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return _Target(resource, namespace, name, sub)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients dropping connections (or stop() cutting them) is expected here


def write_kubeconfig(path: Path, server: str, name: str = "stub") -> Path:
    """A kubeconfig (JSON, which is also YAML) with one context for `server`, no credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config))
    return path


class KubeApiStub:
    """Namespaced and cluster objects behind a real HTTP server on 127.0.0.1."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._objects: dict[str, dict[tuple[str | None, str], _Stored]] = {
            plural: {} for plural in RESOURCES
        }
        # (rv, plural, type, object, labels before a MODIFIED): a selector watch needs both.
        self._history: list[History] = []
        # continue token -> (the list's resourceVersion, keys still to send)
        self._snapshots: collections.OrderedDict[str, tuple[int, list[tuple[str | None, str]]]] = (
            collections.OrderedDict()
        )
        self._token_serial = 0
        self._resource_version = 100
        self._oldest_watchable = 0  # a watch from a resourceVersion below this gets 410
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._generation = 0  # bumped on stop so open watch streams end
        self.port = 0
        self.requests: collections.Counter[str] = collections.Counter()
        # plural -> (the last resourceVersion written to a watch stream, time.monotonic() then)
        self.watch_sent: dict[str, tuple[int, float]] = {}

    # --- lifecycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> int:
        """Listen on 127.0.0.1 (a free port the first time, the same port after a stop)."""
        server = _Server(("127.0.0.1", self.port), self._handler_class())
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.port

    def __enter__(self) -> KubeApiStub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and cut every open connection, including watch streams."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def route(self, method: str, pattern: str, handler: Handler, counter: str) -> None:
        """Serve `method` on paths fully matching `pattern` with `handler` (before storage)."""
        self._routes.append((method.upper(), re.compile(pattern), counter, handler))

    # --- state the tests change ----------------------------------------------------
    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as the test's side of the API server; returns a copy."""
        with self._cond:
            stored = self._put(plural, copy.deepcopy(obj))
            copied: dict[str, Any] = json.loads(self._full(plural, stored))
            return copied

    def put_many(self, plural: str, objects: Iterable[dict[str, Any]]) -> int:
        """`put` for many objects at once (a cluster's worth), without returning copies."""
        count = 0
        with self._cond:
            for obj in objects:
                self._put(plural, obj)
                count += 1
        return count

    def _put(self, plural: str, obj: dict[str, Any]) -> _Stored:
        """Store `obj` (the caller's to give away) as created or replaced. Holds _cond."""
        resource = RESOURCES[plural]
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace") if resource.namespaced else None, meta["name"])
        old = self._objects[plural].get(key)
        meta.setdefault("uid", old.uid if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old.created if old else _now())
        return self._record(plural, "MODIFIED" if old else "ADDED", obj)

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._cond:
            stored = self._objects[plural].get((namespace, name))
            return None if stored is None else json.loads(self._full(plural, stored))

    def items(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                json.loads(self._full(plural, stored))
                for (ns, _), stored in self._objects[plural].items()
                if namespace is None or ns == namespace
            ]

    def count(self, plural: str) -> int:
        with self._cond:
            return len(self._objects[plural])

    def delete(self, plural: str, name: str, namespace: str | None = None) -> None:
        with self._cond:
            stored = self._objects[plural][(namespace, name)]
            self._record(plural, "DELETED", json.loads(stored.data))

    def add_namespace(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return self.put(
            "namespaces",
            {
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/metadata.name": name},
                    "annotations": dict(annotations or {}),
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )

    def set_annotations(self, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        obj = self.get("namespaces", name)
        if obj is None:
            raise KeyError(name)
        obj["metadata"]["annotations"] = dict(annotations)
        return self.put("namespaces", obj)

    def delete_namespace(self, name: str) -> None:
        self.delete("namespaces", name)

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to open watches."""
        with self._cond:
            self._resource_version += 1
            for plural in RESOURCES:
                obj = {"metadata": {"resourceVersion": str(self._resource_version)}}
                version = str(self._resource_version)
                stored = _Stored(json.dumps(obj).encode(), None, "", {}, "", "", version)
                self._history.append((self._resource_version, plural, "BOOKMARK", stored, None))
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget history, as etcd compaction does: older resourceVersions get 410 Gone,
        on a watch and on a list's next page alike."""
        with self._cond:
            self._oldest_watchable = self._resource_version
            self._history.clear()
            self._snapshots.clear()

    def _record(self, plural: str, event: str, obj: dict[str, Any]) -> _Stored:
        """Store (or drop) `obj` under a new resourceVersion and wake watchers. Holds _cond."""
        self._resource_version += 1
        resource = RESOURCES[plural]
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._resource_version)
        namespace = meta.get("namespace") if resource.namespaced else None
        key = (namespace, meta["name"])
        obj.pop("kind", None)  # stored as a list item; GET and watch add them back
        obj.pop("apiVersion", None)
        stored = _Stored(
            json.dumps(obj, separators=(",", ":")).encode(),
            namespace,
            meta["name"],
            dict(meta.get("labels") or {}),
            str(meta.get("uid") or ""),
            str(meta.get("creationTimestamp") or ""),
            meta["resourceVersion"],
        )
        old = self._objects[plural].get(key)
        before = dict(old.labels) if old and event == "MODIFIED" else None
        if event == "DELETED":
            self._objects[plural].pop(key, None)
        else:
            self._objects[plural][key] = stored
        self._history.append((self._resource_version, plural, event, stored, before))
        self._cond.notify_all()
        return stored

    @staticmethod
    def _full(plural: str, stored: _Stored) -> bytes:
        """The stored item as an object of its kind (kind and apiVersion first)."""
        resource = RESOURCES[plural]
        head = f'{{"kind":"{resource.kind}","apiVersion":"{resource.group_version}",'
        return head.encode() + stored.data[1:]

    def _count(self, resource: Resource, verb: str) -> None:
        key = verb if resource.plural == "namespaces" else f"{resource.plural}.{verb}"
        self.requests[key] += 1

    # --- storage verbs (called by the HTTP handler) --------------------------------
    def _matching(self, target: _Target, query: dict[str, str]) -> list[tuple[str | None, str]]:
        """Keys of the stored objects a list names (namespace, label and field selectors),
        in etcd's order: by namespace, then name."""
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        keys = [
            key
            for key, stored in self._objects[target.resource.plural].items()
            if (target.namespace is None or key[0] == target.namespace)
            and selector_matches(labels, stored.labels)
            and _field_matches(fields, stored.name, stored.namespace)
        ]
        return sorted(keys, key=lambda key: (key[0] or "", key[1]))

    def _list_body(self, target: _Target, query: dict[str, str]) -> StubResponse:
        """One page of a list: all of it without `limit`; with it, `limit` objects and a
        `continue` token for the rest (410 Expired once history was compacted).

        Every page carries the first page's resourceVersion and names the objects that
        matched then; later pages send their current state (skipping deleted ones), and a
        watch from that resourceVersion replays whatever changed meanwhile."""
        try:
            limit = max(int(query.get("limit") or 0), 0)
        except ValueError:
            return json_response(400, status_object(400, "BadRequest", "invalid limit"))
        with self._cond:
            token = query.get("continue")
            if token:
                page = self._snapshots.get(token)
                if page is None:
                    message = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."  # fmt: skip
                    return json_response(410, status_object(410, "Expired", message))
                version, keys = page
            else:
                version, keys = self._resource_version, self._matching(target, query)
            shown, rest = (keys[:limit], keys[limit:]) if limit else (keys, [])
            stored = self._objects[target.resource.plural]
            items = [stored[key].data for key in shown if key in stored]
            metadata: dict[str, object] = {"resourceVersion": str(version)}
            if rest:
                self._token_serial += 1
                next_token = f"{version}-{self._token_serial}"
                self._snapshots[next_token] = (version, rest)
                while len(self._snapshots) > _MAX_SNAPSHOTS:
                    self._snapshots.popitem(last=False)
                metadata["continue"] = next_token
                metadata["remainingItemCount"] = len(rest)
            self._snapshots.pop(token or "", None)
        head = {"kind": f"{target.resource.kind}List", "apiVersion": target.resource.group_version}
        body = json.dumps({**head, "metadata": metadata})[:-1].encode()
        return StubResponse(200, body + b',"items":[' + b",".join(items) + b"]}")

    def _not_found(self, target: _Target) -> StubResponse:
        plural, name = target.resource.plural, target.name
        message = f'{plural} "{name}" not found'
        return json_response(404, status_object(404, "NotFound", message, name, plural))

    def _write(self, method: str, target: _Target, body: bytes) -> StubResponse:
        """POST (create), PUT (replace) and DELETE on stored objects."""
        resource = target.resource
        if method == "DELETE":
            with self._cond:
                found = self._objects[resource.plural].get((target.namespace, target.name or ""))
                if found is None:
                    return self._not_found(target)
                self._record(resource.plural, "DELETED", json.loads(found.data))
                return StubResponse(200, self._full(resource.plural, found))
        try:
            obj = json.loads(body or b"{}")
            meta = obj["metadata"]
        except (ValueError, KeyError, TypeError):
            return json_response(400, status_object(400, "BadRequest", "invalid object body"))
        if resource.namespaced:
            meta["namespace"] = target.namespace
        if method == "POST" and not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        with self._cond:
            current = self._objects[resource.plural].get((target.namespace, name))
            if method == "POST":
                if current is not None:
                    message = f'{resource.plural} "{name}" already exists'
                    status = status_object(409, "AlreadyExists", message, name, resource.plural)
                    return json_response(409, status)
                meta["uid"], meta["creationTimestamp"] = str(uuid.uuid4()), _now()
            else:
                if current is None:
                    return self._not_found(_Target(resource, target.namespace, name))
                sent = meta.get("resourceVersion")
                if sent and sent != current.resource_version:
                    message = f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been modified'
                    status = status_object(409, "Conflict", message, name, resource.plural)
                    return json_response(409, status)
                meta["uid"], meta["creationTimestamp"] = current.uid, current.created
            event = "ADDED" if method == "POST" else "MODIFIED"
            stored = self._record(resource.plural, event, obj)
            return StubResponse(
                201 if method == "POST" else 200, self._full(resource.plural, stored)
            )

    # --- HTTP ----------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_RequestHandler,), {"stub": self})


class _RequestHandler(BaseHTTPRequestHandler):
    """One connection to the stub; `stub` is set on a per-server subclass."""

    stub: KubeApiStub
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.stub._cond:
            self.stub._connections.add(self.connection)

    def finish(self) -> None:
        with self.stub._cond:
            self.stub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_BODY)) if length else b""
        for route_method, pattern, counter, handler in self.stub._routes:
            match = pattern.fullmatch(path)
            if route_method == method and match:
                self.stub.requests[counter] += 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = StubRequest(method, path, match, query, headers, body)
                self._send(handler(request))
                return
        target = _parse_path(path)
        if target is None or target.subresource is not None:
            self.stub.requests["other"] += 1
            message = "the server could not find the requested resource"
            self._send(json_response(404, status_object(404, "NotFound", message)))
        elif method == "GET" and target.name is None:
            watching = _is_true(query.get("watch"))
            self.stub._count(target.resource, "watch" if watching else "list")
            if watching:
                self._watch(target, query)
            else:
                self._send(self.stub._list_body(target, query))
        elif method == "GET":
            self.stub._count(target.resource, "get")
            plural = target.resource.plural
            with self.stub._cond:
                found = self.stub._objects[plural].get((target.namespace, target.name or ""))
            if found is None:
                self._send(self.stub._not_found(target))
            else:
                self._send(StubResponse(200, self.stub._full(plural, found)))
        else:
            verb = {"POST": "create", "PUT": "replace", "DELETE": "delete"}[method]
            self.stub._count(target.resource, verb)
            self._send(self.stub._write(method, target, body))

    def _send(self, response: StubResponse) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _chunk(self, payload: dict[str, Any] | bytes) -> None:
        data = (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, target: _Target, query: dict[str, str]) -> None:
        try:
            since = int(query.get("resourceVersion") or 0)
        except ValueError:
            message = "invalid resourceVersion"
            self._send(json_response(400, status_object(400, "BadRequest", message)))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with self.stub._cond:
            generation = self.stub._generation
            expired = since < self.stub._oldest_watchable
        try:
            if expired:
                message = f"too old resource version: {since} ({self.stub._oldest_watchable})"
                error = status_object(410, "Expired", message)
                self._chunk({"type": "ERROR", "object": error})
            else:
                self._stream_events(target, query, since, generation)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _stream_events(
        self, target: _Target, query: dict[str, str], since: int, generation: int
    ) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = _is_true(query.get("allowWatchBookmarks"))
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        plural = target.resource.plural
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.daemon = True
        timer.start()

        def sent_as(entry: History) -> str | None:
            """The event this watch sends for `entry`, or None. As kube-apiserver does, an
            object that starts matching the label selector is ADDED and one that stops is
            DELETED."""
            _, kind_plural, event, stored, before = entry
            if kind_plural != plural:
                return None
            if event == "BOOKMARK":
                return event if bookmarks else None
            if target.namespace is not None and stored.namespace != target.namespace:
                return None
            if not _field_matches(fields, stored.name, stored.namespace):
                return None
            now = selector_matches(labels, stored.labels)
            if before is None:
                return event if now else None
            was = selector_matches(labels, before)
            return {(True, True): event, (False, True): "ADDED", (True, False): "DELETED"}.get(
                (was, now)
            )

        def after(version: int) -> list[History]:
            history = self.stub._history  # ordered by resourceVersion
            return history[bisect.bisect_right(history, version, key=lambda e: e[0]) :]

        try:
            while not deadline.is_set():
                with self.stub._cond:
                    pending = after(since)
                    if not pending:
                        self.stub._cond.wait(_WATCH_POLL_SECONDS)
                        pending = after(since)
                    if self.stub._generation != generation:
                        return
                for entry in pending:
                    since = entry[0]
                    if event := sent_as(entry):
                        kind = event.encode()
                        body = self.stub._full(plural, entry[3])
                        self._chunk(b'{"type":"' + kind + b'","object":' + body + b"}")
                        self.stub.watch_sent[plural] = (entry[0], time.monotonic())
        finally:
            timer.cancel()
