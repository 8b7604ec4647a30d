"""No container but the sidecar may see the sidecar's files, processes or memory.

The sidecar holds a projected service-account token with a sidecred audience: a
bearer at STS (or the broker) for every role whose trust policy admits the pod's
service account, not only the pod's own role. Containers of one pod share the
network but not, by default, processes or files. This module refuses, in a pod
that runs (or gets) the sidecar, every setting that by itself gives another
container a view of the sidecar's token:

- `shareProcessNamespace`, `hostPID`: any container of the sidecar's UID, or a
  root one (which may setuid), reads the token through `/proc/<pid>/root` and
  the sidecar's memory through `/proc/<pid>/mem`; `hostPID` adds the node's.
- `hostIPC`: the pod's IPC namespace and `/dev/shm`, the sidecar's included,
  become the node's; the sidecar runs only in the pod's own kernel namespaces.
- `privileged: true` on any container: every device and capability and no
  seccomp, so it can mount the node's disk and read every pod's volumes.
- Capabilities that leave the container's own view in the same way: SYS_ADMIN
  (mounts), SYS_MODULE (kernel modules), SYS_RAWIO (raw devices and memory),
  DAC_READ_SEARCH (`open_by_handle_at` opens any file of the node's filesystem
  behind a bind mount such as /etc/hosts), BPF and PERFMON (kernel memory, other
  processes' stacks), and ALL. SYS_PTRACE is allowed: without a shared process
  namespace (refused above) it sees no process of the sidecar's, and
  `kubectl debug --profile=general` adds it.
- A `hostPath` at, above or inside a node directory that holds the token or a
  way to it: the kubelet's directory (every pod's volumes, its own client
  certificate), /etc/kubernetes (the node's kubeconfig, which may request the
  sidecar's token for any pod on the node), the node's /proc (`/proc/<pid>/root`
  of every process), or the container runtime's socket, which enters any
  container. A writable hostPath elsewhere may still take over the node; that
  is node compromise, which Pod Security "baseline" (no hostPath at all) keeps
  from tenants, not a list this module could finish.

Pure: plain pod dicts in, Refusal raised. One function serves pod CREATE and
new ephemeral containers, which may set a security context and mount the pod's
existing volumes but add no volumes of their own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from sidecred.pods.annotations import q
from sidecred.pods.refusal import Refusal

_READS = (
    "any container running as the credential sidecar's user, or as root (which may "
    "setuid), could read the sidecar's service-account token through /proc/<pid>/root "
    "and use it for other roles its service account is trusted for"
)
# Pod flag -> (why it is refused, what to do besides removing it or the role annotation).
SHARED_VIEWS = {
    "shareProcessNamespace": (
        f"its containers share one process namespace, so {_READS}",
        " (kubectl debug --copy-to: add --share-processes=false)",
    ),
    "hostPID": (f"its containers share the node's process namespace, so {_READS}", ""),
    "hostIPC": (
        "the credential sidecar would share the node's IPC namespace and shared memory "
        "(/dev/shm) with every hostIPC process on the node, and sidecred keeps the "
        "sidecar's kernel view to its own pod",
        "",
    ),
}
NODE_CAPABILITIES = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF", "PERFMON"}
)
_RUNTIME = "the container runtime's socket, which can enter any container"
_KUBELET = "the kubelet's directory: every pod's volumes, the sidecar's token among them"
# Host paths that reach the sidecar's token: path -> what it exposes. A hostPath at,
# above or inside one is refused. /var/run is /run on every distribution, but the
# kubelet resolves it on the node, so both spellings are listed.
PROTECTED_HOST_PATHS = {
    "/var/lib/kubelet": _KUBELET,
    "/etc/kubernetes": "the node's Kubernetes credentials, which can request the sidecar's token",
    "/proc": "every process of the node, the sidecar's files through /proc/<pid>/root",
    **{
        root + path: _RUNTIME
        for root in ("/run", "/var/run")
        for path in (
            "/containerd",
            "/k3s/containerd",
            "/crio",
            "/docker",
            "/docker.sock",
            "/cri-dockerd.sock",
            "/dockershim.sock",
        )
    },
}


def normal_path(path: str) -> str:
    """An absolute path without `..`, `.`, duplicate or trailing slashes."""
    return posixpath.normpath("/" + path.strip()).replace("//", "/")


def host_path_exposure(path: str) -> str | None:
    """What a hostPath at `path` exposes of the sidecar's token, or None."""
    path = normal_path(path)
    for protected, what in PROTECTED_HOST_PATHS.items():
        if path == protected or path.startswith(protected + "/"):
            return what
        if path == "/" or protected.startswith(path + "/"):
            return what
    return None


def _capability(name: Any) -> str:
    """The runtime's spelling: upper case, without a CAP_ prefix (containerd adds one)."""
    return str(name).strip().upper().removeprefix("CAP_")


def _node_access(container: Mapping[str, Any]) -> str | None:
    context = container.get("securityContext")
    context = context if isinstance(context, dict) else {}
    if context.get("privileged") is True:
        return "is privileged"
    capabilities = context.get("capabilities")
    added = capabilities.get("add") if isinstance(capabilities, dict) else None
    for name in added if isinstance(added, list) else []:
        if _capability(name) in NODE_CAPABILITIES:
            return f"adds capability {q(str(name), 40)}"
    return None


def _exposing_volumes(pod: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """hostPath volumes that reach the sidecar's token: name -> (path, what it exposes)."""
    found = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        host_path = volume.get("hostPath")
        path = host_path.get("path") if isinstance(host_path, dict) else None
        if isinstance(path, str) and (what := host_path_exposure(path)):
            found[str(volume.get("name", ""))] = (path, what)
    return found


def _instead(kind: str) -> str:
    if kind == "ephemeral container":
        return "debug with kubectl debug --profile=general or --profile=restricted instead"
    return "remove it (or the role annotation)"


def check_isolation(
    pod: Mapping[str, Any],
    label: str,
    containers: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    volumes_in_use: bool = True,
) -> None:
    """Refuse a pod with the sidecar whose other containers could read its token.

    `containers` are (kind, container) pairs to judge: every container on CREATE,
    only the new ones for ephemeral containers. With `volumes_in_use` (CREATE) a
    protected hostPath is refused as declared; otherwise only when one of
    `containers` mounts it.
    """
    spec = pod.get("spec") or {}
    for flag, (why, hint) in SHARED_VIEWS.items():
        if spec.get(flag):
            raise Refusal(
                "shared-kernel-view",
                f"sidecred: {label} sets {flag}, so {why}; remove {flag}{hint}, "
                "or the role annotation",
            )
    host_paths = _exposing_volumes(pod)
    if volumes_in_use and host_paths:
        name = sorted(host_paths)[0]
        raise _host_path_refusal(label, f"volume {q(name)}", *host_paths[name])
    for kind, container in containers:
        name = str(container.get("name", ""))
        if access := _node_access(container):
            raise Refusal(
                "node-access",
                f"sidecred: {kind} {q(name)} in {label} {access}, so it could reach the node "
                f"and read the credential sidecar's service-account token; {_instead(kind)}",
            )
        mounted = {m.get("name") for m in container.get("volumeMounts") or []}
        if hits := sorted(mounted & set(host_paths)):
            raise _host_path_refusal(label, f"{kind} {q(name)}", *host_paths[hits[0]])


def _host_path_refusal(label: str, who: str, path: str, exposes: str) -> Refusal:
    return Refusal(
        "node-access",
        f"sidecred: {who} in {label} uses hostPath {q(path, 200)}, which exposes {exposes}, "
        "so the credential sidecar's service-account token could be read and used for "
        "other roles; mount a narrower host path (or remove the role annotation)",
    )
