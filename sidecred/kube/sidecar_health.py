"""What a pod's sidecar says about its credentials, read through the API server's pod proxy.

The sidecar's `/readyz` (health port, no secrets) answers 200 `ready: credentials
for <role> valid until <RFC 3339>` or 503 `not ready: <code>: <message>`, the
code and message being STS's or the broker's. The event reporter and `kubectl
sidecred status` read it with `GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/readyz`
(RBAC `pods/proxy` get), so neither needs a network path to the pod.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sidecred.pods.annotations import INJECTED_KEY
from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.pod import env_value, find_sidecar, iter_containers
from sidecred.pods.sidecar_spec import (
    CONTAINER_CREDENTIALS_PREFIX,
    FULL_URI,
    sidecar_entry_field,
)
from sidecred.sidecar import config as sc

PROXY_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds; the sidecar answers from memory
NOT_READY_STARTING = "CredentialsNotReady"  # the sidecar's code while its first fetch runs
_READY = re.compile(r"ready: credentials for (\S+) valid until (\S+)")
_NOT_READY = re.compile(r"not ready: ([^:\s]+): (.*)", re.DOTALL)
# A sidecar serving several roles names the one that is not ready (the sidecar's own
# wording, sidecar/endpoint.py): `container <c> role <arn>: <code>: <message>`.
_ONE_ROLE = re.compile(r"(?:pod role|container (\S+) role) (\S+): ([^:\s]+): (.*)", re.DOTALL)
_ANOTHER_ROLE = re.compile(r"; (?:pod role|container \S+ role) \S+: ")


@dataclass(frozen=True)
class SidecarHealth:
    """One /readyz answer: ready with an expiry, or not ready with the cause."""

    ready: bool
    role_arn: str = ""
    expires: str = ""  # RFC 3339, when ready
    code: str = ""  # when not ready: STS's, the broker's or the sidecar's code
    message: str = ""
    container: str = ""  # the container whose own role this is about ("" for the pod's)


class HealthUnavailable(Exception):
    """The sidecar could not be asked (pod gone, proxy error, not a sidecar answer)."""


def parse_readyz(status: int, body: str) -> SidecarHealth:
    """Parse the sidecar's /readyz answer; HealthUnavailable if it is not one."""
    text = body.strip()
    if status == 200 and (found := _READY.fullmatch(text)):
        return SidecarHealth(True, role_arn=found.group(1), expires=found.group(2))
    if status == 503 and (found := _NOT_READY.fullmatch(text)):
        code, message = found.group(1), found.group(2).strip()
        one = _ONE_ROLE.fullmatch(message)
        if one is None or _ANOTHER_ROLE.search(message):
            return SidecarHealth(False, code=code, message=message)
        container, role_arn, code, message = one.groups()
        return SidecarHealth(
            False, role_arn=role_arn, code=code, message=message.strip(), container=container or ""
        )
    raise HealthUnavailable(f"not a sidecar /readyz answer (HTTP {status}): {text[:200]!r}")


def health_port(pod: Mapping[str, Any]) -> int | None:
    """The sidecar's health port from its env in the pod spec (None if there is no sidecar)."""
    sidecar = find_sidecar(pod)
    value = env_value(sidecar[2], sc.ENV_HEALTH_PORT) if sidecar else None
    return int(value) if value and value.isdigit() else None


def injected_role(pod: Mapping[str, Any]) -> str:
    """The role ARN the pod was injected for (the webhook's bookkeeping annotation); for a pod
    whose roles are all its containers' own, those roles as `<container>=<ARN>,...`."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    role = str(annotations.get(INJECTED_KEY) or "")
    if role:
        return role
    return ",".join(f"{name}={arn}" for name, arn in sorted(container_roles(pod).items()))


def container_roles(pod: Mapping[str, Any]) -> dict[str, str]:
    """container -> its own role ARN, as the pod's sidecar serves them (never a token)."""
    return sidecar_entry_field(pod, "role_arn")


def roles_by_container(pod: Mapping[str, Any]) -> dict[str, str]:
    """container -> the role ARN its credential env reaches ("" for none), for every init and
    regular container but the sidecar, read from the injected pod spec."""
    sidecar = find_sidecar(pod)
    if sidecar is None:
        return {}
    pod_role_arn = env_value(sidecar[2], sc.ENV_ROLE_ARN) or ""
    own = container_roles(pod)
    roles = {}
    for _, _, container in iter_containers(pod):
        name = str(container.get("name", ""))
        if name == SIDECAR_NAME:
            continue
        path = urllib.parse.urlsplit(env_value(container, FULL_URI) or "").path
        if path == sc.CREDENTIALS_PATH:
            roles[name] = pod_role_arn
        elif path == f"{CONTAINER_CREDENTIALS_PREFIX}{name}/credentials":
            roles[name] = own.get(name, "")
        else:
            roles[name] = ""
    return roles


def sidecar_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The kubelet's status of the sidecar container ({} when it has none yet)."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for entry in status.get(key) or []:
            if isinstance(entry, Mapping) and entry.get("name") == SIDECAR_NAME:
                return entry
    return {}


def proxy_get(api: client.CoreV1Api, pod: Mapping[str, Any], path: str) -> tuple[int, str]:
    """GET `path` on the sidecar's health port through the pod proxy: (status, body).

    The pod's answer comes back as it is, whatever its status; HealthUnavailable when
    the pod has no sidecar or the API server cannot be reached.
    """
    metadata = pod.get("metadata") or {}
    port = health_port(pod)
    if port is None:
        raise HealthUnavailable("the pod has no sidecred sidecar with a health port")
    try:
        response = api.connect_get_namespaced_pod_proxy_with_path(
            f"{metadata.get('name')}:{port}",
            metadata.get("namespace"),
            path,
            _preload_content=False,
            _request_timeout=PROXY_TIMEOUT,
        )
        status, body = response.status, response.data
    except ApiException as exc:  # a 503 from the sidecar arrives here too
        status, body = exc.status, exc.body or b""
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise HealthUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return int(status or 0), text


def read_sidecar_health(api: client.CoreV1Api, pod: Mapping[str, Any]) -> SidecarHealth:
    """The sidecar's /readyz answer; HealthUnavailable says why there is none."""
    return parse_readyz(*proxy_get(api, pod, "readyz"))
