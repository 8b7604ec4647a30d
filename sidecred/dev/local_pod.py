"""Run one patched pod on this machine, the way a kubelet would, for the demo and the e2e tests.

`LocalPod` takes a pod as a plain dict (what the webhook's patch produced) and:

- gives the pod an identity: `metadata.name` (a generated one for a
  `generateName` pod, as the API server does), namespace, uid and service account;
- makes every volume a temporary directory: an `emptyDir` stays empty; a
  `projected` volume's `serviceAccountToken` sources become files holding a
  JWT-shaped test token (unsigned: it only has to look like one);
- starts the `sidecred` container from its spec: its `command` and `args`, and
  ONLY its `env`, with downward-API `fieldRef`s filled in;
- runs its `postStart` exec hook (container mode) and waits for its
  `startupProbe` (httpGet) to pass, polling against a deadline as the kubelet
  does, then lets `run_app` start an application container with ONLY that
  container's env.

Two translations stand in for what a container runtime provides:

- **Mount paths in env values.** A container sees a volume at its `mountPath`
  (`/var/run/sidecred/token`); here the volume is a temporary directory. An env
  value that is a container's own mount path, or a path under it, is rewritten
  to the directory. Only mounts of that container are used, so an app cannot
  reach a volume it does not mount. So is such a path among the string values of an
  env value holding a JSON object (the token files in `SIDECRED_CONTAINER_ROLES`).
  Nothing else (commands, args) is rewritten.
- **Executables.** There is no image: `command[0]` is looked up on this
  machine's PATH. `sidecred` resolves to the console script installed next to
  the running interpreter, else the one on PATH, else
  `<python> -m sidecred.cli`.

Not emulated: images, `envFrom`, `$(VAR)` references, regular init containers,
probes other than the startup probe, network isolation (every container shares
this machine's loopback, as containers of one pod share theirs).

`environment` is env that the *surroundings* need, not the pod (for example
`AWS_ENDPOINT_URL_STS` aiming STS at a local emulator). It is kept apart from
the pod spec, added to every container it starts, and may not redefine a
variable the pod spec sets.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sidecred.dev.processes import ProcessExited, wait_until
from sidecred.pods.names import SIDECAR_NAME

# Characters the API server uses for the suffix of a generateName pod (no vowels).
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATE_NAME_SUFFIX_LENGTH = 5
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_TOKEN_EXPIRATION = 3600
# Seconds between probe attempts. Faster than the kubelet's periodSeconds, so a
# local run does not wait a second for nothing; the deadline follows the spec.
PROBE_POLL_SECONDS = 0.05
LOG_TAIL_LINES = 20


class LocalPodError(RuntimeError):
    """The pod cannot run here, or its sidecar never became ready; the message says why."""


@dataclass(frozen=True)
class PodIdentity:
    """What the downward API tells a container about its pod."""

    name: str
    namespace: str
    uid: str
    service_account: str


@dataclass(frozen=True)
class AppResult:
    """An application container's run: its command, the env it got, exit code and output."""

    container: str
    command: list[str]
    env: dict[str, str]
    exit_code: int
    stdout: str
    stderr: str


# --- pure helpers ----------------------------------------------------------------


def pod_identity(
    pod: Mapping[str, Any], *, namespace: str = "default", rng: random.Random | None = None
) -> PodIdentity:
    """The pod's name (generated from generateName if it has none), namespace, uid, account."""
    rng = rng or random.Random()  # noqa: S311 (a name suffix, not a secret)
    metadata = pod.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        prefix = metadata.get("generateName")
        if not prefix:
            raise LocalPodError("the pod has neither metadata.name nor metadata.generateName")
        suffix = "".join(
            rng.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_SUFFIX_LENGTH)
        )
        name = prefix + suffix
    uid = metadata.get("uid") or str(uuid.UUID(int=rng.getrandbits(128), version=4))
    spec = pod.get("spec") or {}
    return PodIdentity(
        name=name,
        namespace=metadata.get("namespace") or namespace,
        uid=uid,
        service_account=spec.get("serviceAccountName")
        or spec.get("serviceAccount")
        or DEFAULT_SERVICE_ACCOUNT,
    )


def _label_value(field_path: str, prefix: str, values: Mapping[str, str]) -> str | None:
    """`metadata.labels['app']` -> the label's value ("" if unset); None if not that form."""
    if not field_path.startswith(prefix + "[") or not field_path.endswith("]"):
        return None
    key = field_path[len(prefix) + 1 : -1].strip("'\"")
    return str(values.get(key, ""))


def field_ref_value(pod: Mapping[str, Any], identity: PodIdentity, field_path: str) -> str:
    """The value the downward API gives for `fieldRef.fieldPath`."""
    simple = {
        "metadata.name": identity.name,
        "metadata.namespace": identity.namespace,
        "metadata.uid": identity.uid,
        "spec.serviceAccountName": identity.service_account,
        "spec.nodeName": "localhost",
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if field_path in simple:
        return simple[field_path]
    metadata = pod.get("metadata") or {}
    for prefix, values in (
        ("metadata.labels", metadata.get("labels") or {}),
        ("metadata.annotations", metadata.get("annotations") or {}),
    ):
        value = _label_value(field_path, prefix, values)
        if value is not None:
            return value
    raise LocalPodError(f"fieldRef {field_path!r} is not one the local runner can fill in")


def rewrite_mount_paths(value: str, mounts: Mapping[str, Path]) -> str:
    """`value` with a leading container mount path replaced by its directory here.

    Only a value that is a mount path, or a path under one, changes; the
    longest matching mount wins, as nested mounts do in a container.
    """
    for mount_path in sorted(mounts, key=len, reverse=True):
        base = mount_path.rstrip("/") or "/"
        if value == base or value.startswith(base.rstrip("/") + "/"):
            return str(mounts[mount_path]) + value[len(base.rstrip("/")) :]
    return value


def rewrite_json_mount_paths(value: str, mounts: Mapping[str, Path]) -> str:
    """`value` rewritten as `rewrite_mount_paths` does, or, when it is a JSON object, with
    every string in it rewritten so (the object written back compactly)."""
    if not value.startswith("{"):
        return rewrite_mount_paths(value, mounts)
    try:
        data = json.loads(value)
    except ValueError:
        return rewrite_mount_paths(value, mounts)

    def rewrite(node: Any) -> Any:
        if isinstance(node, str):
            return rewrite_mount_paths(node, mounts)
        if isinstance(node, dict):
            return {key: rewrite(item) for key, item in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    rewritten = rewrite(data)
    return value if rewritten == data else json.dumps(rewritten, separators=(",", ":"))


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    identity: PodIdentity,
    mounts: Mapping[str, Path],
) -> dict[str, str]:
    """A container's env as the kubelet would set it: values, fieldRefs, mount paths mapped."""
    name = container.get("name", "")
    if container.get("envFrom"):
        raise LocalPodError(f"container {name!r} uses envFrom, which the local runner cannot fill")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        var = entry.get("name")
        if not var:
            raise LocalPodError(f"container {name!r} has an env entry without a name")
        source = entry.get("valueFrom")
        if source is None:
            value = str(entry.get("value", ""))
        elif isinstance(source, dict) and "fieldRef" in source:
            value = field_ref_value(pod, identity, source["fieldRef"].get("fieldPath", ""))
        else:
            kinds = ", ".join(source) if isinstance(source, dict) else repr(source)
            raise LocalPodError(
                f"container {name!r} env {var} comes from {kinds}, which the local runner cannot fill"
            )
        env[var] = rewrite_json_mount_paths(value, mounts)
    return env


def service_account_token(identity: PodIdentity, audience: str, expiration: int, now: float) -> str:
    """A JWT-shaped, unsigned token with the claims a projected service-account token carries."""

    def part(obj: object) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {
        "aud": [audience],
        "exp": int(now) + expiration,
        "iat": int(now),
        "nbf": int(now),
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{identity.namespace}:{identity.service_account}",
        "kubernetes.io": {
            "namespace": identity.namespace,
            "pod": {"name": identity.name, "uid": identity.uid},
            "serviceaccount": {"name": identity.service_account},
        },
    }
    signature = base64.urlsafe_b64encode(b"local-pod-test-signature").rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'kid': 'local-pod'})}.{part(claims)}.{signature}"


def resolve_command(command: Sequence[str]) -> list[str]:
    """`command` with its executable found on this machine (see the module docstring)."""
    if not command:
        raise LocalPodError("empty command")
    program, rest = command[0], list(command[1:])
    if program == "sidecred":
        beside = Path(sys.executable).parent / "sidecred"
        if beside.is_file() and os.access(beside, os.X_OK):
            return [str(beside), *rest]
        found = shutil.which("sidecred")
        return [found, *rest] if found else [sys.executable, "-m", "sidecred.cli", *rest]
    if os.path.isabs(program):
        return [program, *rest]
    found = shutil.which(program)
    if not found:
        raise LocalPodError(f"command {program!r} is not on this machine's PATH")
    return [found, *rest]


def find_container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    for list_name in ("initContainers", "containers"):
        for container in spec.get(list_name) or []:
            if isinstance(container, dict) and container.get("name") == name:
                return container
    raise LocalPodError(f"the pod has no container named {name!r}")


def probe_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    raise LocalPodError(f"probe port {port!r} is not a port of container {container.get('name')!r}")


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback http)
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, f"no answer: {exc}"


# --- the runner ------------------------------------------------------------------


@dataclass
class LocalPod:
    """One pod's sidecar running here, and its app containers on demand (a context manager)."""

    pod: Mapping[str, Any]
    environment: Mapping[str, str] = field(default_factory=dict)
    namespace: str = "default"
    startup_timeout: float = 60.0  # caps the startupProbe's own periodSeconds x failureThreshold
    workdir: Path | None = None
    rng: random.Random | None = None
    clock: Callable[[], float] = time.time
    # Mints the projected service-account tokens (identity, audience, expirationSeconds,
    # now). The default is unsigned, enough for an STS emulator; with an API stub that
    # reviews tokens (sidecred.dev.token_review), pass its issuer's `local_pod_token`.
    token_issuer: Callable[[PodIdentity, str, int, float], str] = service_account_token

    def __post_init__(self) -> None:
        self.identity = pod_identity(self.pod, namespace=self.namespace, rng=self.rng)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._root = Path()
        self.volumes: dict[str, Path] = {}
        self.sidecar: dict[str, Any] = find_container(self.pod, SIDECAR_NAME)
        self.sidecar_process: subprocess.Popen[bytes] | None = None
        self.sidecar_log_path = Path()
        self._check_environment()

    def _check_environment(self) -> None:
        """Refuse, before starting anything, an environment that would change the pod's env."""
        spec = self.pod.get("spec") or {}
        for list_name in ("initContainers", "containers"):
            for container in spec.get(list_name) or []:
                names = {e.get("name") for e in container.get("env") or []}
                clash = sorted(names & set(self.environment))
                if clash:
                    raise LocalPodError(
                        f"the environment sets {', '.join(clash)}, which container "
                        f"{container.get('name')!r} already sets in the pod spec; the "
                        "environment may only add what the surroundings provide"
                    )

    # --- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> LocalPod:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def prepare(self) -> dict[str, str]:
        """Create the volumes and return the sidecar's env, as the kubelet would set it.

        `start` runs the sidecar with it; a caller that runs the sidecar itself
        (a test or a benchmark) calls only this.
        """
        if self.workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="sidecred-pod-")
            self._root = Path(self._tempdir.name)
        else:
            self._root = Path(self.workdir)
            self._root.mkdir(parents=True, exist_ok=True)
        self._make_volumes()
        return self.env_for(self.sidecar)

    def start(self) -> None:
        """Create the volumes, start the sidecar, run its postStart hook, wait for its probe."""
        env = self.prepare()
        command = resolve_command(
            list(self.sidecar.get("command") or []) + list(self.sidecar.get("args") or [])
        )
        self.sidecar_log_path = self._root / "sidecar.log"
        with open(self.sidecar_log_path, "wb") as log:
            self.sidecar_process = subprocess.Popen(
                command,
                env=env,
                cwd=self._container_dir(SIDECAR_NAME),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the runner, which stops it
            )
        self._run_post_start(env)
        self._wait_for_startup_probe()

    def stop(self) -> None:
        """Stop the sidecar (SIGTERM, then SIGKILL after the grace period) and remove the volumes."""
        process, self.sidecar_process = self.sidecar_process, None
        if process is not None and process.poll() is None:
            self._terminate(process)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        drain_ended = False
        while process.poll() is None and time.monotonic() < deadline:
            # Container mode drains after SIGTERM so apps can still fetch credentials
            # while they shut down. The runner's apps have all exited, so nobody needs
            # the drain: a second SIGTERM ends it, as the sidecar documents.
            if not drain_ended and '"draining"' in self.sidecar_log():
                process.send_signal(signal.SIGTERM)
                drain_ended = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=PROBE_POLL_SECONDS)
        if process.poll() is None:
            process.kill()
            process.wait()

    # --- what the containers see ---------------------------------------------------
    def mounts_for(self, container: Mapping[str, Any]) -> dict[str, Path]:
        """mountPath -> directory here, for the container's own volumeMounts."""
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = mount.get("name")
            if volume not in self.volumes:
                raise LocalPodError(
                    f"container {container.get('name')!r} mounts volume {volume!r}, which the pod does not define"
                )
            path = self.volumes[volume]
            if mount.get("subPath"):
                path = path / mount["subPath"]
            mounts[mount["mountPath"]] = path
        return mounts

    def env_for(self, container: Mapping[str, Any]) -> dict[str, str]:
        """The container's own env (resolved) plus the environment; nothing from this process."""
        env = container_env(self.pod, container, self.identity, self.mounts_for(container))
        return {**env, **self.environment}

    def sidecar_log(self) -> str:
        if not self.sidecar_log_path.is_file():
            return ""
        return self.sidecar_log_path.read_text(errors="replace")

    def sidecar_log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.sidecar_log().splitlines()[-lines:])

    def run_app(
        self, name: str, command: Sequence[str] | None = None, *, timeout: float = 60.0
    ) -> AppResult:
        """Run container `name` with only its env; `command` replaces its command and args.

        There are no images here, so a caller usually passes a `command` that
        does what the image would (for example a python program using boto3).
        """
        if self.sidecar_process is None:
            raise LocalPodError("the pod is not running; use LocalPod as a context manager")
        container = find_container(self.pod, name)
        if container.get("name") == SIDECAR_NAME:
            raise LocalPodError("run_app runs application containers, not the sidecar")
        if command is None:
            command = list(container.get("command") or []) + list(container.get("args") or [])
            if not command:
                raise LocalPodError(
                    f"container {name!r} has no command (it would use its image's entrypoint); pass one"
                )
        argv = resolve_command(command)
        env = self.env_for(container)
        try:
            done = subprocess.run(
                argv,
                env=env,
                cwd=self._container_dir(name),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalPodError(f"container {name!r} did not finish within {timeout:g} s") from exc
        return AppResult(
            container=name,
            command=argv,
            env=env,
            exit_code=done.returncode,
            stdout=done.stdout.decode("utf-8", "replace"),
            stderr=done.stderr.decode("utf-8", "replace"),
        )

    # --- internals -----------------------------------------------------------------
    def _container_dir(self, name: str) -> Path:
        path = self._root / "containers" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _make_volumes(self) -> None:
        now = self.clock()
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume.get("name")
            if not name or set(name) - set(string.ascii_lowercase + string.digits + "-."):
                raise LocalPodError(f"volume name {name!r} is not a DNS label")
            path = self._root / "volumes" / name
            path.mkdir(parents=True)
            for source in (volume.get("projected") or {}).get("sources") or []:
                sa_token = source.get("serviceAccountToken")
                if sa_token is None:
                    continue
                token = self.token_issuer(
                    self.identity,
                    sa_token.get("audience") or "https://kubernetes.default.svc",
                    int(sa_token.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION),
                    now,
                )
                target = path / sa_token.get("path", "token")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(token)
            self.volumes[name] = path

    def _run_post_start(self, env: Mapping[str, str]) -> None:
        hook = ((self.sidecar.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if not hook:
            return
        command = resolve_command(hook.get("command") or [])
        try:
            done = subprocess.run(
                command,
                env=dict(env),
                cwd=self._container_dir(SIDECAR_NAME),
                capture_output=True,
                timeout=self.startup_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LocalPodError(
                f"the sidecar's postStart hook {hook.get('command')} did not finish within "
                f"{self.startup_timeout:g} s; sidecar log tail:\n{self.sidecar_log_tail()}"
            ) from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            raise LocalPodError(
                f"the sidecar's postStart hook {hook.get('command')} exited {done.returncode}: "
                f"{output}; sidecar log tail:\n{self.sidecar_log_tail()}"
            )

    def _wait_for_startup_probe(self) -> None:
        probe = self.sidecar.get("startupProbe")
        if not probe:
            return  # the kubelet starts the next container at once
        http_get = probe.get("httpGet")
        if not http_get:
            raise LocalPodError(
                "the sidecar's startupProbe is not httpGet; the runner speaks only that"
            )
        port = probe_port(self.sidecar, http_get.get("port", 0))
        url = f"http://127.0.0.1:{port}{http_get.get('path', '/')}"
        spec_budget = float(probe.get("initialDelaySeconds", 0)) + float(
            probe.get("periodSeconds", 10)
        ) * float(probe.get("failureThreshold", 3))
        budget = min(spec_budget, self.startup_timeout)
        process = self.sidecar_process
        assert process is not None
        last = [(0, "not probed yet")]

        def probe_passes() -> bool:
            last[0] = _http_get(url)
            return 200 <= last[0][0] < 400

        try:
            wait_until(probe_passes, budget, "the sidecar", PROBE_POLL_SECONDS, process)
        except ProcessExited as exc:
            raise LocalPodError(
                f"the sidecar exited with code {exc.returncode} before its startupProbe "
                f"passed; sidecar log tail:\n{self.sidecar_log_tail()}"
            ) from None
        except AssertionError:
            status, body = last[0]
            raise LocalPodError(
                f"the sidecar's startupProbe GET {url} did not pass within {budget:g} s; "
                f"last answer: {status or 'none'} {body.strip()[:500]}; "
                f"sidecar log tail:\n{self.sidecar_log_tail()}"
            ) from None
