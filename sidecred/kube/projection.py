"""What the watch caches keep of each object: the fields decisions read, never the object.

An object is projected once, as it arrives from a LIST page, a watch event or a
GET, and the raw object is dropped. A projection reads like the object it came
from (a read-only Mapping of the same shape, built on access) but holds only:

- for a pod: namespace, name, uid, service account, deletion timestamp, the
  annotations sidecred and IAM define (`sidecred.dev/*`, `iam.amazonaws.com/*`, and
  the configured role key), its containers' names (init, regular, ephemeral; for
  `sidecred.dev/container-roles`), which list holds the container named `sidecred`
  and its health port, the pod's phase and IP, the sidecar's readiness as the kubelet
  reports it, and (when the cache was given the check) the canonical-sidecar
  verdict, computed from the whole pod at projection time;
- for a namespace: its name and those annotations (its policy).

Slotted objects holding shared strings: about half a kilobyte per pod, where the
parsed object is tens of kilobytes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sidecred.pods.names import SIDECAR_NAME
from sidecred.pods.pod import env_value, find_sidecar
from sidecred.sidecar.config import ENV_HEALTH_PORT

log = logging.getLogger(__name__)

KEPT_PREFIXES = ("sidecred.dev/", "iam.amazonaws.com/")
STATUS_LISTS = ("initContainerStatuses", "containerStatuses")
# Values repeated across pods (role ARNs, phases, ports) are shared, not copied; past
# this length a value is kept as it is (a shared table of huge strings gains nothing).
_SHARED_MAX = 256
_UNCHECKED = object()

# (pod) -> why it does not run the canonical sidecar, or None: computed at projection time.
SidecarCheck = Callable[[Mapping[str, Any]], str | None]


_SHARED_TUPLES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
T = TypeVar("T", bound=tuple[Any, ...])


def _share(value: Any) -> Any:
    if isinstance(value, str) and len(value) <= _SHARED_MAX:
        return sys.intern(value)
    return value


def _text(value: Any) -> str | None:
    """A string field as kept: shared when short; None when absent or not a string."""
    return _share(value) if isinstance(value, str) else None


def _shared_tuple(value: T | None) -> T | None:
    """One tuple per distinct small value (sidecar locations and states repeat across pods)."""
    if value is None or len(_SHARED_TUPLES) >= 4096:
        return value
    try:
        return _SHARED_TUPLES.setdefault(value, value)  # type: ignore[return-value]
    except TypeError:  # an unhashable value: kept unshared
        return value


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def kept_annotations(obj: Mapping[str, Any], extra_keys: frozenset[str]) -> tuple[str, ...]:
    """The annotations decisions read, flat (key, value, key, value, ...)."""
    annotations = _metadata(obj).get("annotations")
    if not isinstance(annotations, dict):
        return ()
    flat: list[str] = []
    for key, value in annotations.items():
        if isinstance(key, str) and (key.startswith(KEPT_PREFIXES) or key in extra_keys):
            flat += (_share(key), _share(value))
    return tuple(flat)


def _annotation_dict(flat: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Projection(Mapping[str, Any]):
    """A read-only, object-shaped view of what a cache keeps; each read builds fresh dicts."""

    __slots__ = ()
    _parts: tuple[str, ...] = ()

    def _part(self, key: str) -> Any:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        if key not in self._parts:
            raise KeyError(key)
        return self._part(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class NamespaceProjection(Projection):
    """A namespace's name and policy annotations."""

    __slots__ = ("annotations", "name")
    _parts = ("metadata",)

    def __init__(self, name: str, annotations: tuple[str, ...]) -> None:
        self.name = name
        self.annotations = annotations

    def _part(self, key: str) -> Any:
        return {"name": self.name, "annotations": _annotation_dict(self.annotations)}


def project_namespace(obj: Mapping[str, Any]) -> NamespaceProjection:
    return NamespaceProjection(
        str(_metadata(obj).get("name") or ""), kept_annotations(obj, frozenset())
    )


SidecarAt = tuple[str, str | None]  # (list name, the health port's env value or None)
# ((list name, (container names...)), ...): what a per-container role map is checked against.
ContainerNames = tuple[tuple[str, tuple[str, ...]], ...]
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
SidecarState = tuple[str, bool, bool]  # (status list, ready, running)


@dataclass(slots=True, kw_only=True, eq=False, repr=False)  # a Mapping's own eq and repr
class PodProjection(Projection):
    """What decisions read of one pod (see the module's docstring)."""

    namespace: str
    name: str
    uid: str
    service_account: str | None
    deletion: str | None
    annotations: tuple[str, ...]
    phase: str | None
    pod_ip: str | None
    sidecar: SidecarAt | None
    sidecar_state: SidecarState | None
    containers: ContainerNames = ()
    verdict: object = _UNCHECKED  # the canonical-sidecar check's answer, if it ran
    _parts = ("metadata", "spec", "status")

    @property
    def checked(self) -> bool:
        """Whether the canonical-sidecar check ran when the pod was projected."""
        return self.verdict is not _UNCHECKED

    @property
    def sidecar_problem(self) -> str | None:
        """The check's verdict: why the pod does not run the canonical sidecar, or None."""
        verdict = self.verdict
        if verdict is _UNCHECKED:
            raise ValueError("this projection was made without the canonical-sidecar check")
        return verdict if isinstance(verdict, str) else None

    def _part(self, key: str) -> Any:
        if key == "metadata":
            return self._metadata_part()
        if key == "spec":
            return self._spec_part()
        return self._status_part()

    def _metadata_part(self) -> dict[str, Any]:
        part: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        if self.annotations:
            part["annotations"] = _annotation_dict(self.annotations)
        if self.deletion is not None:
            part["deletionTimestamp"] = self.deletion
        return part

    def _spec_part(self) -> dict[str, Any]:
        part: dict[str, Any] = {}
        if self.service_account is not None:
            part["serviceAccountName"] = self.service_account
        for list_name, names in self.containers:
            part[list_name] = [{"name": name} for name in names if name != SIDECAR_NAME]
        if self.sidecar is not None:
            list_name, port = self.sidecar
            container: dict[str, Any] = {"name": SIDECAR_NAME}
            if port is not None:
                container["env"] = [{"name": ENV_HEALTH_PORT, "value": port}]
            part[list_name] = [*part.get(list_name, []), container]
        return part

    def _status_part(self) -> dict[str, Any]:
        part: dict[str, Any] = {}
        if self.phase is not None:
            part["phase"] = self.phase
        if self.pod_ip is not None:
            part["podIP"] = self.pod_ip
        if self.sidecar_state is not None:
            list_name, ready, running = self.sidecar_state
            state: dict[str, Any] = {"running": {}} if running else {}
            part[list_name] = [{"name": SIDECAR_NAME, "ready": ready, "state": state}]
        return part


def _sidecar_state(status: Mapping[str, Any]) -> SidecarState | None:
    for list_name in STATUS_LISTS:
        entries = status.get(list_name)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("name") == SIDECAR_NAME:
                state = entry.get("state")
                running = isinstance(state, dict) and "running" in state
                return list_name, bool(entry.get("ready")), running
    return None


def _container_names(spec: Mapping[str, Any]) -> ContainerNames:
    """The names in each container list (only for pods whose annotations map roles to them
    is this needed, but it is small and shared when it repeats)."""
    kept: list[tuple[str, tuple[str, ...]]] = []
    for list_name in CONTAINER_LISTS:
        entries = spec.get(list_name)
        names = tuple(
            _share(entry["name"])
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
        )
        if names:
            kept.append((list_name, names))
    return _shared_tuple(tuple(kept)) or ()


def _part_of(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    part = obj.get(key)
    return part if isinstance(part, dict) else {}


@dataclass(frozen=True)
class PodProjector:
    """Projects pods for one cache: which extra annotation to keep (the configured role
    key), and the canonical-sidecar check to run on the whole pod, if any."""

    annotation_keys: frozenset[str] = frozenset()
    sidecar_check: SidecarCheck | None = None

    def __call__(self, obj: Mapping[str, Any]) -> PodProjection:
        metadata = _metadata(obj)
        spec, status = _part_of(obj, "spec"), _part_of(obj, "status")
        found = find_sidecar(obj)
        sidecar: SidecarAt | None = None
        if found is not None:
            sidecar = _shared_tuple((found[0], _text(env_value(found[2], ENV_HEALTH_PORT))))
        return PodProjection(
            namespace=_text(metadata.get("namespace")) or "",
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            service_account=_text(spec.get("serviceAccountName")),
            deletion=_text(metadata.get("deletionTimestamp")),
            annotations=kept_annotations(obj, self.annotation_keys),
            phase=_text(status.get("phase")),
            pod_ip=_text(status.get("podIP")),
            sidecar=sidecar,
            sidecar_state=_shared_tuple(_sidecar_state(status)),
            containers=_container_names(spec),
            verdict=self._verdict(obj) if self.sidecar_check is not None else _UNCHECKED,
        )

    def _verdict(self, obj: Mapping[str, Any]) -> str | None:
        """The check's verdict; a check that fails on an odd pod is a problem (fail closed)."""
        assert self.sidecar_check is not None
        try:
            return self.sidecar_check(obj)
        except Exception as exc:
            log.warning("canonical-sidecar check failed on a pod: %s", type(exc).__name__)
            return f"its sidecar could not be checked ({type(exc).__name__})"
