"""`sidecred demo`: the whole flow on this machine, step by step, with nothing faked.

1. an STS emulator (moto_server) in a subprocess, with the example pod's role;
2. `sidecred certs`, a Kubernetes API stub holding the example namespaces, and
   `sidecred webhook` over TLS as a real process;
3. the allowed example pod sent to /mutate as an AdmissionReview over HTTPS
   (CA verified), the patch summarised, the patched pod sent to /validate;
4. the sidecar started exactly as the patched pod describes it (local_pod);
5. an application run with only the patched app container's env, calling
   sts:GetCallerIdentity through the SDK's default chain;
6. a pod with a role per container (deploy/examples/pod-app-and-backup.yaml):
   admitted, its sidecar started, app and backup each reaching their own role,
   metrics no credentials, and one container's token refused on another's URI;
7. the denied example pod sent to /mutate, and the denial printed;
8. a verdict: exit 0 only if every step behaved as expected.

With `--credential-source broker` the broker sits in the middle: step 2 also
starts `sidecred broker` over TLS (the API stub publishes the issuer's signing
keys, answers TokenReview and holds the admitted pod), the sidecar of step 4 gets its credentials from the broker,
and a revocation step before the verdict takes the role out of the namespace's
policy and shows the broker's 403 and the restarted sidecar's not-ready reason.

Everything it starts is stopped on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import http.client
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidecred.dev.kube_stub import KubeApiStub, write_kubeconfig
from sidecred.dev.local_pod import (
    AppResult,
    LocalPod,
    LocalPodError,
    find_container,
    resolve_command,
    service_account_token,
)
from sidecred.dev.processes import free_port, stop_process, wait_until
from sidecred.dev.token_review import TokenAuthority
from sidecred.jsonlog import ENV_LOG_LEVEL, add_log_level_argument
from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    INJECTED_KEY,
    INJECTED_LABEL,
    PERMITTED_KEY,
    ROLE_KEY,
)
from sidecred.pods.container_roles import parse_container_roles
from sidecred.pods.names import SA_TOKEN_VOLUME, SIDECAR_NAME
from sidecred.pods.sidecar_spec import AUTH_TOKEN, AUTH_TOKEN_FILE, FULL_URI
from sidecred.sidecar import config as contract
from sidecred.webhook.check_cli import build_request, load_yaml_object
from sidecred.webhook.mutate import apply_patch

STEP_COUNT = 8  # 9 with the broker (its revocation step)
# Package data in a wheel; in a checkout a symlink to deploy/examples.
DEFAULT_EXAMPLES = Path(__file__).resolve().parent / "examples"
# What the `demo` extra brings: the STS emulator (moto[server]) and boto3 for the application.
DEMO_EXTRA_MODULES = ("moto", "flask", "boto3")
SERVICE, SERVICE_NAMESPACE = "sidecred", "sidecred-system"
SERVER_NAME = f"{SERVICE}.{SERVICE_NAMESPACE}.svc"  # the name the serving certificate carries
# The broker's certificate names localhost, so the sidecar verifies https://localhost:<port>.
BROKER_HOST = "localhost"
REGION = "us-east-1"
# moto accepts any keys; only the demo's own IAM call uses these, never the app.
EMULATOR_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EMULATOR_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
START_TIMEOUT = 30.0  # seconds for a started process to answer
SECRET_ENV = {AUTH_TOKEN, contract.ENV_AUTH_TOKEN}
ENV_CONTAINER_ROLES = contract.ENV_CONTAINER_ROLES
ROLES_EXAMPLE = "pod-app-and-backup.yaml"
STATIC_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
POLL_SECONDS = 0.05

# The "application": what `aws sts get-caller-identity` in the example's image
# does, through the SDK's default credential chain, with no code for sidecred.
APP_PROGRAM = f"""
import json, os, boto3
session = boto3.Session()
identity = session.client("sts").get_caller_identity()
print(json.dumps({{
    "Arn": identity["Arn"],
    "Account": identity["Account"],
    "CredentialProvider": session.get_credentials().method,
    "StaticKeysInEnv": [k for k in {STATIC_KEY_ENV!r} if k in os.environ],
}}))
"""


class DemoFailure(Exception):
    """A step did not behave as expected; the message says what and why."""


@dataclass
class Reporter:
    """Prints the steps one by one with their timings."""

    write: Callable[[str], None] = print
    failures: list[str] = field(default_factory=list)
    steps: int = STEP_COUNT

    def detail(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.write(f"      {line}")

    @contextlib.contextmanager
    def step(self, number: int, title: str) -> Iterator[None]:
        self.write(f"\n[{number}/{self.steps}] {title}")
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            # Any error ends the demo with a message, never a bare traceback.
            self.write(f"      FAILED after {time.perf_counter() - started:.2f} s")
            known = isinstance(exc, (DemoFailure, LocalPodError))
            message = str(exc) if known else f"{type(exc).__name__}: {exc}"
            self.failures.append(f"step {number} ({title}): {message}")
            raise DemoFailure(message) from exc
        self.write(f"      ok ({time.perf_counter() - started:.2f} s)")


# --- processes -----------------------------------------------------------------


def wait_for_start(
    check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll `check` until true; fail at once if `process` exits, or at the deadline."""
    try:
        wait_until(check, START_TIMEOUT, what, POLL_SECONDS, process)
    except AssertionError as exc:
        raise DemoFailure(f"{exc}; log tail:\n{tail(log)}") from None


def tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_process(
    stack: contextlib.ExitStack, argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start a process logging to `log`; the stack stops it (SIGTERM, then SIGKILL)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    stack.callback(stop_process, process)
    return process


def shown_argv(argv: list[str]) -> str:
    """A command line for the report: its arguments, files by their names only."""
    return " ".join(Path(a).name if "/" in a and "://" not in a else a for a in argv[1:])


def clean_env() -> dict[str, str]:
    """This process's env without SIDECRED_* and AWS_* settings, so the demo is the same anywhere;
    only the log level (`--log-level`) is passed on to every process the demo starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECRED_", "AWS_"))}
    if os.environ.get(ENV_LOG_LEVEL):
        env[ENV_LOG_LEVEL] = os.environ[ENV_LOG_LEVEL]
    return env


# --- HTTPS to the webhook and the broker -----------------------------------------


class ServiceHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that verifies the certificate for the Service's DNS name."""

    def __init__(self, port: int, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__("127.0.0.1", port, timeout=10, context=context)
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


@dataclass
class ServiceClient:
    """HTTPS to the webhook or the broker, verifying its certificate for `server_name`."""

    port: int
    context: ssl.SSLContext
    server_name: str

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = ServiceHTTPSConnection(self.port, self.context, self.server_name)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = dict(headers or {})
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def answers_ready(self) -> bool:
        try:
            return self.request("GET", "/readyz")[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def review(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send an AdmissionReview as the API server does; return its response part."""
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }
        status, body = self.request("POST", path, review)
        if status != 200:
            raise DemoFailure(f"POST {path} answered HTTP {status}: {body[:500]!r}")
        answer = json.loads(body)
        response = answer.get("response") or {}
        if response.get("uid") != request["uid"]:
            raise DemoFailure(
                f"POST {path} answered for uid {response.get('uid')!r}, not {request['uid']!r}"
            )
        return response


# --- reading the examples and the patch ------------------------------------------


@dataclass(frozen=True)
class RoleRef:
    arn: str
    account: str
    path: str
    name: str

    @classmethod
    def parse(cls, arn: str) -> RoleRef:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
            raise DemoFailure(f"{arn!r} is not an IAM role ARN")
        resource = parts[5][len("role/") :]
        path, _, name = resource.rpartition("/")
        return cls(arn=arn, account=parts[4], path=f"/{path}/" if path else "/", name=name)


def describe_env(entry: dict[str, Any]) -> str:
    name = entry.get("name", "")
    if "valueFrom" in entry:
        ref = (entry["valueFrom"].get("fieldRef") or {}).get("fieldPath", "?")
        return f"{name} <- downward API {ref}"
    value = str(entry.get("value", ""))
    if name in SECRET_ENV:
        value = f"<per-pod token, {len(value)} characters>"
    elif name == ENV_CONTAINER_ROLES:
        value = masked_container_roles(value)
    elif name == contract.ENV_BROKER_CA:
        value = f"<the broker's CA bundle, {value.count('BEGIN CERTIFICATE')} PEM certificate(s)>"
    return f"{name}={value}"


def masked_container_roles(value: str) -> str:
    """SIDECRED_CONTAINER_ROLES for printing: each auth token replaced by its length."""
    try:
        entries = json.loads(value)
    except ValueError:
        return "<not JSON>"
    if not isinstance(entries, dict):
        return "<not a JSON object>"
    for entry in entries.values():
        if isinstance(entry, dict) and "auth_token" in entry:
            entry["auth_token"] = (
                f"<per-container token, {len(str(entry['auth_token']))} characters>"
            )
    return json.dumps(entries)


def summarise_pod(pod: dict[str, Any], warnings: list[str]) -> str:
    """Where the sidecar went, each container's env, the volumes, the warnings."""
    spec = pod.get("spec") or {}
    lines = []
    for list_name in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(list_name) or []):
            name = container.get("name")
            if name == SIDECAR_NAME:
                kind = (
                    "native sidecar (restartPolicy: Always)"
                    if container.get("restartPolicy") == "Always"
                    else "regular container with a postStart wait"
                )
                lines.append(f"sidecar {name!r} at {list_name}[{index}]: {kind}")
            else:
                lines.append(f"container {name!r} ({list_name}[{index}])")
            lines += [f"  env {describe_env(e)}" for e in container.get("env") or []]
            lines += [
                f"  mount {m.get('name')} at {m.get('mountPath')}{' (read-only)' if m.get('readOnly') else ''}"
                for m in container.get("volumeMounts") or []
            ]
    for volume in spec.get("volumes") or []:
        kind = next((k for k in volume if k != "name"), "?")
        lines.append(f"volume {volume.get('name')}: {kind}")
    lines += [f"warning: {w}" for w in warnings] or ["warnings: none"]
    return "\n".join(lines)


# --- the demo --------------------------------------------------------------------


@dataclass
class Demo:
    args: argparse.Namespace
    stack: contextlib.ExitStack
    report: Reporter
    workdir: Path = field(default_factory=Path)

    def run(self) -> None:
        examples = Path(self.args.examples)
        self.allowed_pod = load_yaml_object(str(examples / "pod-allowed.yaml"), "pod")
        self.denied_pod = load_yaml_object(str(examples / "pod-denied.yaml"), "pod")
        self.roles_pod = load_yaml_object(str(examples / ROLES_EXAMPLE), "pod")
        self.namespaces = [
            load_yaml_object(str(path), "namespace")
            for path in sorted(examples.glob("namespace-*.yaml"))
        ]
        annotations = (self.allowed_pod.get("metadata") or {}).get("annotations") or {}
        self.role = RoleRef.parse(annotations.get(ROLE_KEY, ""))
        roles = (self.roles_pod.get("metadata") or {}).get("annotations") or {}
        own = parse_container_roles(roles.get(CONTAINER_ROLES_KEY, "{}"))
        self.backup_role = RoleRef.parse(str(own.get("backup", "")))

        with self.report.step(1, "Start an STS emulator and create the role"):
            self.start_sts()
        servers = "the broker and the webhook" if self.broker_mode else "the webhook"
        with self.report.step(2, f"Issue certificates and start {servers} over TLS"):
            self.start_webhook()
        with self.report.step(
            3, "Admit deploy/examples/pod-allowed.yaml (POST /mutate, /validate)"
        ):
            self.admit_allowed()
        with self.report.step(4, "Start the sidecar as the patched pod describes it"):
            self.start_sidecar()
        with self.report.step(5, "Run the application with only its container's env"):
            self.run_application()
        with self.report.step(6, f"A role per container: deploy/examples/{ROLES_EXAMPLE}"):
            self.run_role_per_container()
        with self.report.step(7, "Admit deploy/examples/pod-denied.yaml (POST /mutate)"):
            self.admit_denied()
        if self.broker_mode:
            with self.report.step(8, "Revoke: take the role out of the namespace's policy"):
                self.revoke()

    @property
    def broker_mode(self) -> bool:
        return bool(self.args.credential_source == "broker")

    def start_sts(self) -> None:
        port = free_port()
        self.sts_url = f"http://127.0.0.1:{port}"
        # The emulator's account is the example role's, so the role lives where its ARN says.
        env = clean_env() | {"MOTO_ACCOUNT_ID": self.role.account}
        log = self.workdir / "moto.log"
        process = start_process(
            self.stack,
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            log,
            env,
        )
        wait_for_start(
            lambda: http_answers(self.sts_url + "/moto-api/"), "moto_server", process, log
        )
        self.report.detail(f"moto_server on {self.sts_url} (account {self.role.account})")

        import boto3  # only the demo's own IAM call; the app gets no keys

        iam = boto3.client(
            "iam",
            endpoint_url=self.sts_url,
            region_name=REGION,
            aws_access_key_id=EMULATOR_ACCESS_KEY_ID,
            aws_secret_access_key=EMULATOR_SECRET_ACCESS_KEY,
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": "kubernetes"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        for role in (self.role, self.backup_role):
            created = iam.create_role(
                RoleName=role.name, Path=role.path, AssumeRolePolicyDocument=json.dumps(trust)
            )["Role"]["Arn"]
            if created != role.arn:
                raise DemoFailure(f"the emulator created {created}, not the pod's role {role.arn}")
            self.report.detail(f"created role {created}")

    def issue_certificates(self, service: str, out: Path) -> Path:
        certs = subprocess.run(
            [
                *resolve_command(["sidecred", "certs"]),
                *("--service", service, "--namespace", SERVICE_NAMESPACE, "--out", str(out)),
            ],
            capture_output=True,
            env=clean_env(),
            timeout=START_TIMEOUT,
            check=False,
        )
        if certs.returncode != 0:
            raise DemoFailure(f"sidecred certs failed: {certs.stderr.decode(errors='replace')}")
        return out

    def start_api_stub(self) -> Path:
        """The API stub with the example namespaces, the issuer's keys and TokenReview; its
        kubeconfig."""
        self.stub = KubeApiStub()
        for namespace in self.namespaces:
            metadata = namespace.get("metadata") or {}
            self.stub.add_namespace(metadata["name"], metadata.get("annotations") or {})
        self.authority = TokenAuthority(self.stub)  # JWKS and TokenReview, for the broker
        self.stub.start()
        self.stack.callback(self.stub.stop)
        names = ", ".join((n.get("metadata") or {}).get("name", "?") for n in self.namespaces)
        self.report.detail(f"Kubernetes API stub on {self.stub.url} with namespaces: {names}")
        kubeconfig = write_kubeconfig(self.workdir / "kubeconfig.yaml", self.stub.url, "demo")
        return kubeconfig

    def start_webhook(self) -> None:
        tls = self.issue_certificates(SERVICE, self.workdir / "tls")
        self.report.detail(f"sidecred certs: CA and serving certificate for {SERVER_NAME} in {tls}")
        kubeconfig = self.start_api_stub()
        port, self.sidecar_port, self.health_port = free_port(), free_port(), free_port()
        # The options the webhook and the broker share (one ConfigMap in a cluster).
        options = [
            *("--kubeconfig", str(kubeconfig)),
            *("--sidecar-port", str(self.sidecar_port), "--health-port", str(self.health_port)),
            *("--region", REGION),
            *("--sidecar-mode", self.args.sidecar_mode, "--token-mode", self.args.token_mode),
        ]
        if self.broker_mode:
            options += self.start_broker(options)
        argv = [
            *resolve_command(["sidecred", "webhook"]),
            *("--tls-cert", str(tls / "tls.crt"), "--tls-key", str(tls / "tls.key")),
            *("--host", "127.0.0.1", "--port", str(port)),
            *options,
        ]
        log = self.workdir / "webhook.log"
        process = start_process(self.stack, argv, log, clean_env())
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        self.webhook = ServiceClient(port, context, SERVER_NAME)
        wait_for_start(self.webhook.answers_ready, "sidecred webhook", process, log)
        self.report.detail(f"sidecred {shown_argv(argv)}")
        self.report.detail(
            f"ready on https://127.0.0.1:{port} (certificate verified as {SERVER_NAME})"
        )

    def start_broker(self, options: list[str]) -> list[str]:
        """`sidecred broker` over TLS with the webhook's options; the options that point at it."""
        tls = self.issue_certificates(BROKER_HOST, self.workdir / "tls-broker")
        port = free_port()
        pointing = [
            *("--credential-source", "broker", "--broker-url", f"https://{BROKER_HOST}:{port}"),
            *("--broker-ca-file", str(tls / "ca.crt")),
        ]
        argv = [
            *resolve_command(["sidecred", "broker"]),
            *("--tls-cert", str(tls / "tls.crt"), "--tls-key", str(tls / "tls.key")),
            *("--host", "127.0.0.1", "--port", str(port)),
            *options,
            *pointing,
        ]
        # The broker's base credentials: the emulator's keys, given to no other process.
        env = clean_env() | {
            "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_ACCESS_KEY,
            "AWS_ENDPOINT_URL_STS": self.sts_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.broker_log = self.workdir / "broker.log"
        self.broker_process = start_process(self.stack, argv, self.broker_log, env)
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        self.broker = ServiceClient(port, context, BROKER_HOST)
        wait_for_start(
            self.broker.answers_ready, "sidecred broker", self.broker_process, self.broker_log
        )
        self.report.detail(f"sidecred certs: CA and serving certificate for {BROKER_HOST} in {tls}")
        self.report.detail(f"sidecred {shown_argv(argv)}")
        self.report.detail(
            f"ready on https://{BROKER_HOST}:{port}: the only process holding base credentials "
            "(the emulator's keys); it verifies tokens against the API stub's JWKS"
        )
        return pointing

    def admit(self, pod: dict[str, Any], which: str) -> dict[str, Any]:
        """`pod` through /mutate and /validate over TLS; the patched pod. Prints the patch."""
        request = build_request(pod, "shop") | {"dryRun": False}
        response = self.webhook.review("/mutate", request)
        if not response.get("allowed"):
            raise DemoFailure(f"/mutate denied the {which} pod: {response.get('status')}")
        if response.get("patchType") != "JSONPatch" or not response.get("patch"):
            raise DemoFailure("/mutate allowed the pod but sent no JSON Patch")
        patch = json.loads(base64.b64decode(response["patch"]))
        patched = apply_patch(pod, patch)
        warnings = list(response.get("warnings") or [])
        self.report.detail(f"decision: allowed, {len(patch)} JSON Patch operations")
        self.report.detail(summarise_pod(patched, warnings))
        validation = self.webhook.review(
            "/validate", build_request(patched, "shop") | {"dryRun": False}
        )
        if not validation.get("allowed"):
            raise DemoFailure(f"/validate denied the patched pod: {validation.get('status')}")
        self.report.detail("/validate: the patched pod is allowed")
        if self.args.show_pod:
            self.report.detail("patched pod:\n" + yaml.safe_dump(patched, sort_keys=False))
        return patched

    def admit_allowed(self) -> None:
        self.patched = self.admit(self.allowed_pod, "allowed")
        injected = (self.patched["metadata"].get("annotations") or {}).get(INJECTED_KEY)
        if injected != self.role.arn:
            raise DemoFailure(f"{INJECTED_KEY} is {injected!r}, not {self.role.arn!r}")

    def environment(self) -> dict[str, str]:
        """The surroundings, not the pod: STS is the emulator, no shared config from this
        machine, and no instance metadata to fall back on."""
        home = self.workdir / "aws-empty"
        home.mkdir(exist_ok=True)
        (home / "config").touch()
        (home / "credentials").touch()
        environment = {
            "AWS_ENDPOINT_URL_STS": self.sts_url,
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if os.environ.get("PYTHONPATH"):  # the sidecar runs the sidecred the demo runs
            environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return environment

    def local_pod(self, patched: dict[str, Any]) -> LocalPod:
        pod, issuer = patched, service_account_token
        if self.broker_mode:
            # The API server stores the admitted pod; the kubelet mints its broker-audience
            # token, signed with the key the broker fetches from the stub's JWKS.
            pod, issuer = self.store_pod(patched), self.authority.local_pod_token
        return LocalPod(
            pod, environment=self.environment(), startup_timeout=START_TIMEOUT, token_issuer=issuer
        )

    def start_sidecar(self) -> None:
        self.pod = self.local_pod(self.patched)
        self.stack.enter_context(self.pod)
        self.report.detail(
            f"pod {self.pod.identity.namespace}/{self.pod.identity.name} "
            f"(service account {self.pod.identity.service_account})"
        )
        sidecar = self.pod.sidecar
        command = " ".join(sidecar.get("command") or [])
        self.report.detail(f"sidecar: {command} (pid {self.pod.sidecar_process.pid})")  # type: ignore[union-attr]
        added = ", ".join(self.pod.environment)
        self.report.detail(f"environment added for this machine: {added}")
        self.report.detail(
            f"startupProbe GET :{self.health_port}/readyz passed: credentials are cached"
        )
        for line in self.pod.sidecar_log().splitlines():
            if '"started"' in line:
                self.report.detail(f"sidecar log: {line.strip()}")

    def run_identity(self, pod: LocalPod, container: str) -> tuple[dict[str, Any], AppResult]:
        """Run APP_PROGRAM in `container` with only its env: (what it saw, the run)."""
        result = pod.run_app(container, [sys.executable, "-c", APP_PROGRAM], timeout=START_TIMEOUT)
        leaked = sorted(k for k in result.env if k.startswith("SIDECRED_") or k in STATIC_KEY_ENV)
        if leaked:
            raise DemoFailure(f"the {container} container's env holds {', '.join(leaked)}")
        if result.exit_code != 0:
            raise DemoFailure(
                f"the application exited {result.exit_code}:\n{result.stderr.strip()[-2000:]}\n"
                f"sidecar log tail:\n{pod.sidecar_log_tail()}"
            )
        try:
            seen = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DemoFailure(f"the application printed no identity: {result.stdout!r}") from None
        return seen, result

    def run_application(self) -> None:
        seen, result = self.run_identity(self.pod, "app")
        self.report.detail(f"app env (names only): {', '.join(sorted(result.env))}")
        session = f"{self.pod.identity.namespace}.{self.pod.identity.name}"
        expected_arn = f"arn:aws:sts::{self.role.account}:assumed-role/{self.role.name}/{session}"
        self.report.detail(f"credential provider: {seen['CredentialProvider']}")
        self.report.detail(f"assumed role ARN:    {seen['Arn']}")
        self.report.detail(f"session name:        {seen['Arn'].rsplit('/', 1)[-1]}")
        if seen["StaticKeysInEnv"]:
            raise DemoFailure(f"the app saw static keys: {seen['StaticKeysInEnv']}")
        if seen["CredentialProvider"] != "container-role":
            raise DemoFailure(
                f"the SDK used {seen['CredentialProvider']!r} credentials, not the container endpoint"
            )
        if seen["Arn"] != expected_arn:
            raise DemoFailure(f"expected {expected_arn}, the application got {seen['Arn']}")
        self.report.detail(f"matches the annotated role {self.role.arn} and session {session}")

    def run_role_per_container(self) -> None:
        """app on the pod's role, backup on its own, metrics on none; tokens kept apart."""
        self.pod.stop()  # the first pod is done; one sidecar at a time on the demo's ports
        patched = self.admit(self.roles_pod, "role-per-container")
        with contextlib.ExitStack() as stack:
            pod = stack.enter_context(self.local_pod(patched))
            identity = f"{pod.identity.namespace}.{pod.identity.name}"
            tokens: dict[str, tuple[str, str]] = {}
            for container, role, session in (
                ("app", self.role, identity),
                ("backup", self.backup_role, f"{identity}.backup"),
            ):
                seen, result = self.run_identity(pod, container)
                expected = f"arn:aws:sts::{role.account}:assumed-role/{role.name}/{session}"
                uri = result.env[FULL_URI]
                self.report.detail(f"{container}: {uri} -> {seen['Arn']}")
                if seen["Arn"] != expected or seen["CredentialProvider"] != "container-role":
                    raise DemoFailure(f"{container} expected {expected}, got {seen['Arn']}")
                tokens[container] = (uri, container_token(result.env))
            metrics = pod.env_for(find_container(pod.pod, "metrics"))
            if any(k.startswith(("AWS_CONTAINER_", "SIDECRED_")) for k in metrics):
                raise DemoFailure("the metrics container got credential env")
            self.report.detail('metrics: no credential env, no token (mapped to "")')
            status = credentials_status(tokens["backup"][0], tokens["app"][1])
            self.report.detail(f"app's token on backup's URI: HTTP {status}")
            if status != 403:
                raise DemoFailure(f"app's token on backup's URI got HTTP {status}, not 403")

    def admit_denied(self) -> None:
        request = build_request(self.denied_pod, "shop") | {"dryRun": False}
        response = self.webhook.review("/mutate", request)
        status = response.get("status") or {}
        if response.get("allowed"):
            raise DemoFailure("/mutate allowed the pod the namespace policy forbids")
        self.report.detail(f"decision: denied (HTTP-style code {status.get('code')})")
        self.report.detail(
            "kubectl would print: Error from server (Forbidden): error when creating "
            f'"pod-denied.yaml": admission webhook "mutate.sidecred.dev" denied the request: '
            f"{status.get('message')}"
        )
        if status.get("code") != 403 or "is not permitted in namespace" not in str(
            status.get("message")
        ):
            raise DemoFailure(f"unexpected denial: {status}")

    def store_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The admitted pod as the API server stores it (a name, a uid, sidecred's label)."""
        stored = copy.deepcopy(pod)
        metadata = stored["metadata"]
        metadata.setdefault("name", LocalPod(pod).identity.name)
        metadata.setdefault("labels", {})[INJECTED_LABEL] = "true"
        return self.stub.put("pods", stored)

    def revoke(self) -> None:
        """Narrow the namespace's policy; the broker refuses the pod; its sidecar says why."""
        namespace = self.pod.identity.namespace
        narrowed = f"arn:aws:iam::{self.role.account}:role/shop-writer"
        self.stub.set_annotations(namespace, {PERMITTED_KEY: narrowed})
        self.report.detail(
            f"kubectl annotate namespace {namespace} --overwrite {PERMITTED_KEY}={narrowed}"
        )
        self.pod.prepare()  # its sidecar stopped at step 6; the kubelet's token for the broker
        token = broker_token(self.pod)
        headers = {"Authorization": f"Bearer {token}"}

        def refused() -> bool:
            return self.broker.request("POST", "/v1/credentials", None, headers)[0] == 403

        wait_for_start(refused, "the broker's refusal", self.broker_process, self.broker_log)
        status, body = self.broker.request("POST", "/v1/credentials", None, headers)
        answer = json.loads(body)
        self.report.detail(
            f"POST /v1/credentials with the pod's token: HTTP {status} "
            f"{answer['Code']}: {answer['Message']}"
        )
        self.report.detail("the sidecar restarts, as the kubelet restarts a container:")
        self.pod.stop()
        sidecar = start_sidecar_unprobed(self.pod, self.stack)
        reason = wait_for_not_ready(self.pod, sidecar)
        self.report.detail(f"sidecar /readyz: 503 {reason}")
        if "RoleNotPermitted" not in reason or self.role.arn not in reason:
            raise DemoFailure(f"the sidecar is not ready for another reason: {reason}")
        self.report.detail(
            "a running sidecar turns not ready at its next refresh, keeps serving what it "
            "still holds, and every credential handed out expires within one session (1 h)"
        )


def container_token(env: dict[str, str]) -> str:
    """A container's auth token: the content of its token file, or its env value."""
    if AUTH_TOKEN_FILE in env:
        return Path(env[AUTH_TOKEN_FILE]).read_text().strip()
    return env.get(AUTH_TOKEN, "")


def credentials_status(uri: str, token: str) -> int:
    """The HTTP status of GET `uri` with `token`, as an SDK would ask."""
    request = urllib.request.Request(uri, headers={"Authorization": token})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 (loopback http)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def broker_token(pod: LocalPod) -> str:
    """The pod's projected token for the broker, as the kubelet wrote it."""
    path = next(p for p in pod.volumes[SA_TOKEN_VOLUME].rglob("*") if p.is_file())
    return path.read_text()


def start_sidecar_unprobed(pod: LocalPod, stack: contextlib.ExitStack) -> subprocess.Popen[bytes]:
    """The pod's sidecar started with fresh volumes, without waiting for its startupProbe."""
    env = pod.prepare()
    command = list(pod.sidecar.get("command") or []) + list(pod.sidecar.get("args") or [])
    process = subprocess.Popen(
        resolve_command(command), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stack.callback(stop_process, process)
    return process


def sidecar_readyz(pod: LocalPod) -> tuple[int, str]:
    """The sidecar's GET /readyz on its health port: (status, body), (0, "") while it is down."""
    port = next(e["value"] for e in pod.sidecar["env"] if e["name"] == contract.ENV_HEALTH_PORT)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def wait_for_not_ready(pod: LocalPod, process: subprocess.Popen[bytes]) -> str:
    """The sidecar's not-ready reason, once its first fetch has failed."""
    last = [(0, "")]

    def reason_given() -> bool:
        last[0] = sidecar_readyz(pod)
        status, body = last[0]
        # Before its first answer the sidecar says it is fetching; then it says why it failed.
        return status == 503 and "not ready:" in body and "CredentialsNotReady" not in body

    try:
        wait_until(reason_given, START_TIMEOUT, "a not-ready reason", POLL_SECONDS, process)
    except AssertionError:
        status, body = last[0]
        raise DemoFailure(
            f"the restarted sidecar gave no not-ready reason (last: {status} {body!r})"
        ) from None
    return last[0][1].strip()


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback http)
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecred demo",
        description="Run admission, the sidecar and an application locally against an STS emulator.",
    )
    parser.add_argument(
        "--examples",
        default=str(DEFAULT_EXAMPLES),
        help="directory with pod-allowed.yaml, pod-denied.yaml and namespace-*.yaml "
        "(default: the examples shipped with sidecred, deploy/examples in the source)",
    )
    parser.add_argument(
        "--credential-source",
        choices=("web-identity", "broker"),
        default="web-identity",
        help="the sidecar asks STS itself (web-identity) or sidecred broker (broker)",
    )
    parser.add_argument(
        "--sidecar-mode",
        choices=contract.SIDECAR_MODES,
        default="native",
        help="webhook --sidecar-mode",
    )
    parser.add_argument(
        "--token-mode", choices=contract.TOKEN_MODES, default="file", help="webhook --token-mode"
    )
    parser.add_argument("--show-pod", action="store_true", help="also print the patched pod (YAML)")
    add_log_level_argument(parser)
    return parser


def missing_demo_extra() -> list[str]:
    """The modules of the `demo` extra that are not installed."""
    return [name for name in DEMO_EXTRA_MODULES if importlib.util.find_spec(name) is None]


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    os.environ[ENV_LOG_LEVEL] = args.log_level  # for every process the demo starts
    missing = missing_demo_extra()
    if missing:
        print(
            f"sidecred demo: needs the demo extra (missing {', '.join(missing)}): "
            "pip install 'sidecred[demo]'",
            file=sys.stderr,
        )
        return 2
    report = Reporter(steps=STEP_COUNT + (args.credential_source == "broker"))
    print("sidecred demo: admission, sidecar and application on this machine (STS is an emulator)")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sidecred-demo-")))
        demo = Demo(args, stack, report, workdir)
        try:
            demo.run()
        except DemoFailure:
            pass
        except KeyboardInterrupt:
            print("\ninterrupted; stopping everything the demo started", file=sys.stderr)
            return 130
        finally:
            print(f"\n[{report.steps}/{report.steps}] Verdict (stopping everything started)")
    elapsed = time.perf_counter() - started
    if report.failures:
        for failure in report.failures:
            print(f"      FAILED {failure}")
        print(f"      demo failed after {elapsed:.1f} s")
        return 1
    print(f"      every step behaved as expected; {elapsed:.1f} s in all")
    return 0
