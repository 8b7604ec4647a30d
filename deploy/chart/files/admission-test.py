"""helm test: send one AdmissionReview to the webhook Service over TLS and check the answer.

Reads SIDECRED_TEST_URL (https://<service>.<namespace>.svc/validate), the CA from
SIDECRED_TEST_CA_FILE or SIDECRED_TEST_CA_PEM, and optionally
SIDECRED_TEST_SERVER_NAME (the name the certificate must carry; default: the URL's host).
"""

import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse
import uuid

url = os.environ["SIDECRED_TEST_URL"]
context = ssl.create_default_context(
    cafile=os.environ.get("SIDECRED_TEST_CA_FILE") or None,
    cadata=os.environ.get("SIDECRED_TEST_CA_PEM") or None,
)
server_name = os.environ.get("SIDECRED_TEST_SERVER_NAME") or urllib.parse.urlsplit(url).hostname
uid = str(uuid.uuid4())
pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sidecred-helm-test-probe", "namespace": "default"},
    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
}
review = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": "default",
        "name": "sidecred-helm-test-probe",
        "userInfo": {"username": "sidecred-helm-test"},
        "object": pod,
        "oldObject": None,
        "dryRun": True,
    },
}


parts = urllib.parse.urlsplit(url)
address = (parts.hostname, parts.port or 443)
try:
    with socket.create_connection(address, timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            connection = http.client.HTTPConnection(*address, timeout=10)
            connection.sock = tls
            connection.request(
                "POST", parts.path or "/", json.dumps(review), {"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            status, text = answer.status, answer.read()
except OSError as exc:
    sys.exit(f"sidecred helm test: no answer from {url}: {exc}")
if status != 200:
    sys.exit(f"sidecred helm test: {url} answered {status}: {text[:300]!r}")
try:
    body = json.loads(text)
except ValueError as exc:
    sys.exit(f"sidecred helm test: {url} answered no JSON: {exc}")
body = body if isinstance(body, dict) else {}
response = body.get("response") if isinstance(body.get("response"), dict) else {}
if body.get("kind") != "AdmissionReview" or response.get("uid") != uid:
    sys.exit(f"sidecred helm test: not an answer to this review: {json.dumps(body)[:300]}")
if response.get("allowed") is not True:
    sys.exit(f"sidecred helm test: an ordinary pod was refused: {json.dumps(response)[:300]}")
print(f"sidecred helm test: {url} answered the review (uid {uid}, allowed)")
