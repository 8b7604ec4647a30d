"""Smoke-test the built images as a cluster runs them (scripts/image calls this).

Every container runs non-root (65532), with a read-only root filesystem, all
capabilities dropped and no new privileges, on the host's network but bound to
127.0.0.1 only:

1. the webhook image issues certificates (`sidecred certs`), then serves
   `sidecred webhook` over TLS against a Kubernetes API stub; the example pod is
   sent to /mutate and the patched pod to /validate as AdmissionReviews, with
   the CA verified;
2. the sidecar image runs the patched pod's sidecar container exactly as the
   patch describes it (command, env, downward API values, volumes) against an
   STS emulator (moto_server), and a boto3 client with only the app container's
   env gets the annotated role through the SDK's default chain;
3. the sidecar image holds the sidecar's import closure and nothing else (no
   botocore, pip, setuptools, shell, apt, dpkg or perl), verifies TLS with
   Debian's CA bundle, and the assume-role sidecar image adds botocore; every
   image carries its OCI labels and runs as 65532.

Exit 0 when every check passed; otherwise the failure and the containers' logs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sidecred.dev.demo import SERVER_NAME, SERVICE, SERVICE_NAMESPACE, ServiceClient
from sidecred.dev.kube_stub import KubeApiStub, write_kubeconfig
from sidecred.dev.local_pod import (
    container_env,
    find_container,
    pod_identity,
    probe_port,
    service_account_token,
)
from sidecred.dev.processes import free_port, stop_process, wait_until
from sidecred.pods.pod import SIDECAR_NAME
from sidecred.webhook.check_cli import build_request, load_yaml_object
from sidecred.webhook.mutate import apply_patch

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"
REGION = "us-east-1"
IMAGE_USER = "65532:65532"
TIMEOUT = 60.0
# What a cluster gives a container: non-root, read-only root, no capabilities, no new privileges.
HARDENED = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", IMAGE_USER, "--network", "host")  # fmt: skip
# Modules the slim sidecar image must not hold (the webhook's dependencies and sidecred's own).
NOT_IN_SIDECAR = ("fastapi", "uvicorn", "starlette", "kubernetes", "cryptography", "re2",
                  "prometheus_client", "yaml", "jsonpatch", "sidecred.webhook", "sidecred.certs",
                  "sidecred.dev", "sidecred.broker", "sidecred.pods", "pip", "setuptools")  # fmt: skip
# Programs a sidecar image has no use for (it is a root filesystem of python3's own packages).
NO_PROGRAMS = ("/bin/sh", "/usr/bin/bash", "/usr/bin/apt", "/usr/bin/dpkg", "/usr/bin/perl")
APP_PROGRAM = "import json, boto3; print(json.dumps(boto3.client('sts').get_caller_identity()))"


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


def podman(*args: str, check: bool = True) -> str:
    command = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
    if args and args[0] == "run":  # explicit ulimits, as scripts/image chose them
        command[6:6] = os.environ.get("PODMAN_ULIMITS", "").split()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if check and result.returncode != 0:
        raise SmokeFailure(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


@contextlib.contextmanager
def container(image: str, args: list[str], volumes: dict[Path, str], env: dict[str, str] | None = None,
              entrypoint: list[str] | None = None) -> Iterator[str]:  # fmt: skip
    """A hardened detached container, removed afterwards; its log is shown if the block fails."""
    name = f"sidecred-smoke-{uuid.uuid4().hex[:8]}"
    options = [*HARDENED, "--name", name, "--detach"]
    for host, target in volumes.items():
        options += ["--volume", f"{host}:{target}"]
    for key, value in (env or {}).items():
        options += ["--env", f"{key}={value}"]
    if entrypoint:
        options += ["--entrypoint", json.dumps(entrypoint)]
    podman("run", *options, image, *args)
    try:
        yield name
    except BaseException:
        print(f"--- log of {image} ({name}):\n{podman('logs', name, check=False)}", file=sys.stderr)
        raise
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def wait_for(ready: Any, what: str, name: str) -> None:
    """Poll `ready()` until true while container `name` runs."""

    def ready_while_running() -> bool:
        if ready():
            return True
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).strip()
        if state not in ("running", "created", "configured"):
            raise SmokeFailure(f"{what} stopped ({state or 'gone'}) before it was ready")
        return False

    try:
        wait_until(ready_while_running, TIMEOUT, what, interval=0.1)
    except AssertionError:
        raise SmokeFailure(f"{what} was not ready within {TIMEOUT:.0f} s") from None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def review(webhook: ServiceClient, path: str, request: dict[str, Any]) -> dict[str, Any]:
    """POST one AdmissionReview to the webhook; its response, checked for status and uid."""
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    status, answer = webhook.request("POST", path, body)
    if status != 200:
        raise SmokeFailure(f"{path} answered HTTP {status}: {answer[:300]!r}")
    response = json.loads(answer)["response"]
    if response.get("uid") != request["uid"]:
        raise SmokeFailure(f"{path} answered uid {response.get('uid')!r}, not {request['uid']!r}")
    return response


def writable_dir(path: Path) -> Path:
    """A host directory the image's user can write to (an emptyDir's stand-in)."""
    path.mkdir(parents=True)
    path.chmod(0o777)  # the container runs as another UID; a private temp dir
    return path


def check_webhook(image: str, sidecar_image: str, work: Path, kube_url: str) -> dict[str, Any]:
    """Certificates and admission from the webhook image; returns the patched example pod."""
    certs = writable_dir(work / "certs")
    podman("run", *HARDENED, "--rm", "--volume", f"{certs}:/certs", image, "certs",
           "--service", SERVICE, "--namespace", SERVICE_NAMESPACE, "--out", "/certs")  # fmt: skip
    kubeconfig = write_kubeconfig(work / "kubeconfig.yaml", kube_url, "smoke")
    kubeconfig.chmod(0o644)  # the image runs as another UID
    # HTTPS verified as the Service name, as the API server does.
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    webhook = ServiceClient(free_port(), context, SERVER_NAME)
    args = ["webhook", "--tls-cert", "/certs/tls.crt", "--tls-key", "/certs/tls.key",
            "--host", "127.0.0.1", "--port", str(webhook.port), "--region", REGION,
            "--kubeconfig", "/etc/sidecred/kubeconfig",
            "--sidecar-port", str(free_port()), "--health-port", str(free_port())]  # fmt: skip
    volumes = {certs: "/certs:ro", kubeconfig: "/etc/sidecred/kubeconfig:ro"}
    pod = load_yaml_object(str(EXAMPLES / "pod-allowed.yaml"), "pod")
    namespace = pod["metadata"]["namespace"]
    with container(image, args, volumes) as name:
        wait_for(webhook.answers_ready, "the webhook", name)
        mutated = review(webhook, "/mutate", build_request(pod, namespace) | {"dryRun": False})
        if not mutated.get("allowed") or mutated.get("patchType") != "JSONPatch":
            raise SmokeFailure(f"/mutate did not inject the example pod: {mutated.get('status')}")
        patched = apply_patch(pod, json.loads(base64.b64decode(mutated["patch"])))
        validated = review(
            webhook, "/validate", build_request(patched, namespace) | {"dryRun": False}
        )
        if not validated.get("allowed"):
            raise SmokeFailure(f"/validate refused the patched pod: {validated.get('status')}")
    image_used = find_container(patched, SIDECAR_NAME).get("image")
    if image_used != sidecar_image:
        raise SmokeFailure(f"the injected sidecar runs {image_used!r}, not {sidecar_image!r}")
    print(f"image: webhook ok: certs; /mutate and /validate over TLS verified as {SERVER_NAME}")
    return patched


def pod_volumes(pod: dict[str, Any], identity: Any, work: Path) -> dict[str, Path]:
    """A host directory per pod volume; projected service-account tokens written into theirs."""
    directories = {}
    for volume in pod["spec"].get("volumes") or []:
        directory = writable_dir(work / "volumes" / volume["name"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token:
                value = service_account_token(identity, token.get("audience", ""),
                                              int(token.get("expirationSeconds", 3600)), time.time())  # fmt: skip
                (directory / token["path"]).write_text(value)
                (directory / token["path"]).chmod(0o644)
        directories[volume["name"]] = directory
    return directories


def check_sidecar(image: str, pod: dict[str, Any], work: Path, sts_url: str) -> None:
    """The patched pod's sidecar container from the sidecar image; boto3 as the app container."""
    identity = pod_identity(pod, namespace=pod["metadata"]["namespace"])
    volumes = pod_volumes(pod, identity, work)
    sidecar = find_container(pod, SIDECAR_NAME)
    mounts = {volumes[m["name"]]: m["mountPath"] + (":ro" if m.get("readOnly") else "")
              for m in sidecar.get("volumeMounts") or []}  # fmt: skip
    surroundings = {"AWS_ENDPOINT_URL_STS": sts_url, "AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}  # fmt: skip
    env = container_env(pod, sidecar, identity, {}) | surroundings
    probe = sidecar["startupProbe"]["httpGet"]
    ready_url = f"http://127.0.0.1:{probe_port(sidecar, probe['port'])}{probe.get('path', '/')}"
    with container(image, list(sidecar.get("args") or []), mounts, env, sidecar["command"]) as name:
        wait_for(lambda: http_ok(ready_url), "the sidecar", name)
        app = next(c for c in pod["spec"]["containers"] if c["name"] != SIDECAR_NAME)
        app_mounts = {m["mountPath"]: volumes[m["name"]] for m in app.get("volumeMounts") or []}
        app_env = container_env(pod, app, identity, app_mounts)
        result = subprocess.run(
            [sys.executable, "-c", APP_PROGRAM], capture_output=True, text=True, timeout=TIMEOUT,
            env={"PATH": os.environ["PATH"], "HOME": str(work)} | surroundings | app_env, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise SmokeFailure(f"the app could not get credentials: {result.stderr}")
    role = pod["metadata"]["annotations"]["iam.amazonaws.com/role"].rsplit("/", 1)[1]
    arn = json.loads(result.stdout)["Arn"]
    expected = f":assumed-role/{role}/{identity.namespace}.{identity.name}"
    if not arn.endswith(expected):
        raise SmokeFailure(f"the app got {arn!r}, expected an ARN ending {expected!r}")
    print(f"image: sidecar ok: credentials from STS served to boto3 as {arn}")


def check_image_config(image: str, version: str, revision: str) -> None:
    (inspected,) = json.loads(podman("image", "inspect", image))
    config = inspected["Config"]
    labels = config.get("Labels") or {}
    expected = {"org.opencontainers.image.version": version,
                "org.opencontainers.image.revision": revision,
                "org.opencontainers.image.source": "https://github.com/sidecred/sidecred"}  # fmt: skip
    wrong = {k: labels.get(k) for k, v in expected.items() if labels.get(k) != v}
    if wrong or config.get("User") != IMAGE_USER:
        raise SmokeFailure(f"{image}: user {config.get('User')!r}, wrong labels {wrong}")


def check_sidecar_closure(image: str, with_botocore: bool) -> None:
    probe = ("import importlib.util as u, json, os, ssl; "
             f"print(json.dumps([[m for m in {(*NOT_IN_SIDECAR, 'botocore')!r} if u.find_spec(m)],"
             f" [p for p in {NO_PROGRAMS!r} if os.path.lexists(p)],"
             " ssl.create_default_context().cert_store_stats()['x509_ca']]))")  # fmt: skip
    modules, programs, cas = json.loads(
        podman("run", *HARDENED, "--rm", "--entrypoint", '["python3", "-c"]', image, probe)
    )
    expected = ["botocore"] if with_botocore else []
    if modules != expected or programs or cas < 100:
        raise SmokeFailure(f"{image} holds {modules + programs} and {cas} CA certificates")
    print(f"image: {image} holds none of {', '.join(NOT_IN_SIDECAR)} nor a shell, apt, dpkg or "
          f"perl; {cas} CA certificates" + ("; botocore" if with_botocore else ""))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--webhook-image", "--sidecar-image", "--assume-role-image", "--version",
                   "--revision"):  # fmt: skip
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sidecred-image-")))
        work.chmod(0o755)
        namespace = load_yaml_object(str(EXAMPLES / "namespace-shop.yaml"), "namespace")
        stub = KubeApiStub()
        stub.add_namespace(namespace["metadata"]["name"], namespace["metadata"]["annotations"])
        stub.start()
        stack.callback(stub.stop)
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port := free_port())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=os.environ | {"MOTO_ACCOUNT_ID": "111122223333"},
        )  # fmt: skip
        stack.callback(stop_process, moto)
        sts_url = f"http://127.0.0.1:{port}"
        try:
            for image in (args.webhook_image, args.sidecar_image, args.assume_role_image):
                check_image_config(image, args.version, args.revision)
            check_sidecar_closure(args.sidecar_image, with_botocore=False)
            check_sidecar_closure(args.assume_role_image, with_botocore=True)
            patched = check_webhook(args.webhook_image, args.sidecar_image, work, stub.url)
            try:
                wait_until(lambda: http_ok(sts_url + "/moto-api/"), TIMEOUT, "moto", 0.1, moto)
            except AssertionError:
                raise SmokeFailure("moto_server (the STS emulator) did not start") from None
            check_sidecar(args.sidecar_image, patched, work, sts_url)
        except SmokeFailure as failure:
            print(f"image: FAILED {failure}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
