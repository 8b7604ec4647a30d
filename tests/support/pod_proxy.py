"""The API server's pod proxy for sidecred.dev.kube_stub: GET .../pods/NAME:PORT/proxy/PATH.

As the real API server does, it forwards to the pod's `status.podIP` (127.0.0.1
for the local pods of these tests) and passes the pod's status code, content
type and body through; a pod that does not exist or has no IP is a Status 404/503.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from sidecred.dev.kube_stub import (
    KubeApiStub,
    StubRequest,
    StubResponse,
    json_response,
    status_object,
)

# The client sends NAME:PORT with the colon percent-encoded, as the API server accepts.
PROXY_PATTERN = r"/api/v1/namespaces/([^/]+)/pods/([^/:%]+)(?::|%3[Aa])([0-9]+)/proxy/(.*)"


def add_pod_proxy(stub: KubeApiStub) -> None:
    def proxy(request: StubRequest) -> StubResponse:
        namespace, name, port, path = request.match.groups()
        pod = stub.get("pods", name, namespace)
        if pod is None:
            message = f'pods "{name}" not found'
            return json_response(404, status_object(404, "NotFound", message, name, "pods"))
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            message = f'pod "{name}" has no IP address'
            return json_response(503, status_object(503, "ServiceUnavailable", message))
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/{path}", timeout=5) as answer:
                status, body, kind = answer.status, answer.read(), answer.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), exc.headers["Content-Type"]
        except OSError as exc:
            message = f"error trying to reach service: {exc}"
            return json_response(503, status_object(503, "ServiceUnavailable", message))
        return StubResponse(status, body, kind or "text/plain")

    stub.route("GET", PROXY_PATTERN, proxy, counter="pods.proxy")
