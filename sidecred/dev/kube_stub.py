"""A small Kubernetes API server stand-in for namespaces, for tests and the demo.

It serves the real JSON shapes the `kubernetes` client expects: a
NamespaceList with `metadata.resourceVersion`, a chunked watch stream of
`{"type", "object"}` lines that stays open and pushes events as the test
changes namespaces, single Namespace GETs with a real `Status` 404, and an
`ERROR` event with code 410 when a watch asks for a compacted resourceVersion.
It can be stopped and restarted on the same port (the "API server went away"
case) and counts requests per kind so tests can prove a warm cache makes none.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

NAMESPACES_PATH = "/api/v1/namespaces"
# How often an idle watch stream looks at the stop flag; events wake it at once.
_WATCH_POLL_SECONDS = 0.2


def _is_true(value: str | None) -> bool:
    """Query booleans as the API server parses them (Go's strconv.ParseBool)."""
    return (value or "").lower() in ("1", "t", "true")


def status_object(code: int, reason: str, message: str, name: str | None = None) -> dict:
    status: dict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name is not None:
        status["details"] = {"name": name, "kind": "namespaces"}
    return status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients dropping connections (or stop() cutting them) is expected here


class KubeApiStub:
    """Namespaces behind a real HTTP server on 127.0.0.1."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._namespaces: dict[str, dict] = {}
        self._events: list[tuple[int, str, dict]] = []
        self._resource_version = 100
        self._oldest_watchable = 0  # a watch from a resourceVersion below this gets 410
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._generation = 0  # bumped on stop so open watch streams end
        self.port = 0
        self.requests: collections.Counter[str] = collections.Counter()

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

    # --- state the tests change ----------------------------------------------------
    def add_namespace(self, name: str, annotations: dict[str, str] | None = None) -> dict:
        with self._cond:
            obj = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "labels": {"kubernetes.io/metadata.name": name},
                    "annotations": dict(annotations or {}),
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self._record("ADDED", obj)
            return copy.deepcopy(obj)

    def set_annotations(self, name: str, annotations: dict[str, str]) -> dict:
        with self._cond:
            obj = copy.deepcopy(self._namespaces[name])
            obj["metadata"]["annotations"] = dict(annotations)
            self._record("MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete_namespace(self, name: str) -> None:
        with self._cond:
            obj = copy.deepcopy(self._namespaces[name])
            self._record("DELETED", obj)

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to open watches."""
        with self._cond:
            self._resource_version += 1
            obj = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._resource_version)},
            }
            self._events.append((self._resource_version, "BOOKMARK", obj))
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget history, as etcd compaction does: older resourceVersions get 410 Gone."""
        with self._cond:
            self._oldest_watchable = self._resource_version
            self._events.clear()

    def _record(self, kind: str, obj: dict) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self._namespaces.pop(name, None)
        else:
            self._namespaces[name] = obj
        self._events.append((self._resource_version, kind, copy.deepcopy(obj)))
        self._cond.notify_all()

    # --- HTTP ----------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with stub._cond:
                    stub._connections.add(self.connection)

            def finish(self) -> None:
                with stub._cond:
                    stub._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                path = url.path.rstrip("/")
                if path == NAMESPACES_PATH:
                    if _is_true(query.get("watch")):
                        stub.requests["watch"] += 1
                        self._watch(query)
                    else:
                        stub.requests["list"] += 1
                        self._list()
                elif path.startswith(NAMESPACES_PATH + "/") and path.count("/") == 4:
                    stub.requests["get"] += 1
                    self._get(unquote(path.rsplit("/", 1)[1]))
                else:
                    stub.requests["other"] += 1
                    self._send_json(
                        404,
                        status_object(
                            404, "NotFound", "the server could not find the requested resource"
                        ),
                    )

            def _send_json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _list(self) -> None:
                with stub._cond:
                    items = []
                    for obj in stub._namespaces.values():
                        item = copy.deepcopy(obj)
                        item.pop("kind", None)  # list items carry no kind/apiVersion
                        item.pop("apiVersion", None)
                        items.append(item)
                    body = {
                        "kind": "NamespaceList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(stub._resource_version)},
                        "items": items,
                    }
                self._send_json(200, body)

            def _get(self, name: str) -> None:
                with stub._cond:
                    obj = copy.deepcopy(stub._namespaces.get(name))
                if obj is None:
                    message = f'namespaces "{name}" not found'
                    self._send_json(404, status_object(404, "NotFound", message, name))
                else:
                    self._send_json(200, obj)

            def _chunk(self, payload: dict) -> None:
                data = json.dumps(payload).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, query: dict[str, str]) -> None:
                try:
                    since = int(query.get("resourceVersion") or 0)
                except ValueError:
                    self._send_json(
                        400, status_object(400, "BadRequest", "invalid resourceVersion")
                    )
                    return
                timeout = float(query.get("timeoutSeconds") or 1800)
                bookmarks = _is_true(query.get("allowWatchBookmarks"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with stub._cond:
                    generation = stub._generation
                    expired = since < stub._oldest_watchable
                try:
                    if expired:
                        message = f"too old resource version: {since} ({stub._oldest_watchable})"
                        self._chunk(
                            {"type": "ERROR", "object": status_object(410, "Expired", message)}
                        )
                    else:
                        self._stream_events(since, timeout, bookmarks, generation)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

            def _stream_events(
                self, since: int, timeout: float, bookmarks: bool, generation: int
            ) -> None:
                deadline = threading.Event()
                timer = threading.Timer(timeout, deadline.set)
                timer.daemon = True
                timer.start()
                try:
                    while not deadline.is_set():
                        with stub._cond:
                            pending = [e for e in stub._events if e[0] > since]
                            if not pending:
                                stub._cond.wait(_WATCH_POLL_SECONDS)
                                pending = [e for e in stub._events if e[0] > since]
                            if stub._generation != generation:
                                return
                        for rv, kind, obj in pending:
                            since = rv
                            if kind == "BOOKMARK" and not bookmarks:
                                continue
                            self._chunk({"type": kind, "object": obj})
                finally:
                    timer.cancel()

        return Handler
