"""The canonical sidecar (SECURITY.md, Path 2): the one definition of "the sidecar" for a pod.

Admission and the broker both ask the same two questions, so both import this
module: what `sidecred` container would the webhook build for this pod and
configuration (`canonical_sidecar`), and does the pod run exactly that and
nothing else that could act as a sidecar (`check_sidecar`). "Already injected"
is decided here, by the canonical sidecar being present, never by an annotation.

Pure: plain pod dicts and a Settings in, data out. Refusal is raised only
for a role or option annotation that cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import annotations_of, q, read_pod_options
from sidecred.pods.names import RESERVED_VOLUMES, SA_TOKEN_VOLUME, SIDECAR_NAME
from sidecred.pods.pod import find_sidecar, iter_containers, mounted_volumes
from sidecred.pods.refusal import Refusal
from sidecred.pods.roles import RoleError, resolve_role
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import Injection, build_sidecar, build_volumes, plan_injection
from sidecred.sidecar import config as sc

ENV_PREFIX = "SIDECRED_"
# A token-mode-env sidecar's token is random; the canonical one for a pod that has
# none yet holds this marker, which no real sidecar carries, so it never matches.
UNSET_TOKEN = "<generated at injection>"
# Fields the API server or common admission plugins set on every container; a value
# the webhook did not write is tolerated only for these keys (with these values).
API_DEFAULTS: dict[str, object] = {
    "terminationMessagePath": "/dev/termination-log",
    "successThreshold": 1,
    "scheme": "HTTP",
    "protocol": "TCP",
    "initialDelaySeconds": 0,
    "defaultMode": 420,  # projected volumes
}
# Not part of what the sidecar runs: quantities are normalised by the API server,
# and AlwaysPullImages rewrites the pull policy.
IGNORED_KEYS = frozenset({"resources", "imagePullPolicy"})
_WORD_RE = re.compile(r"[^\w./-]+")


@dataclass(frozen=True)
class SidecarVerdict:
    """Whether the pod runs the canonical sidecar, and the first forged-sidecar problem."""

    canonical: bool
    problem: Refusal | None = None
    location: tuple[str, int] | None = None  # (list name, index) of the container named sidecred


def pod_role(pod: Mapping[str, Any], config: Settings) -> str | None:
    """The pod's resolved role ARN, or None when it carries no role annotation."""
    annotations = annotations_of(pod)
    if config.annotation_key not in annotations:
        return None
    try:
        return resolve_role(
            annotations[config.annotation_key], config.base_role_arn, config.annotation_key
        )
    except RoleError as exc:
        raise Refusal("bad-annotation", f"sidecred: {exc}") from None


def _namespace_of(pod: Mapping[str, Any], namespace: str | None) -> str:
    return namespace or str((pod.get("metadata") or {}).get("namespace") or "")


def canonical_injection(
    pod: Mapping[str, Any], config: Settings, namespace: str | None = None
) -> Injection | None:
    """The Injection the webhook plans for this pod; None when the pod asks for no role."""
    role_arn = pod_role(pod, config)
    if role_arn is None:
        return None
    options = read_pod_options(annotations_of(pod), config.session_duration, config.token_mode)
    return plan_injection(
        pod, role_arn, options, config, lambda: UNSET_TOKEN, _namespace_of(pod, namespace)
    )


def canonical_sidecar(
    pod: Mapping[str, Any], config: Settings, namespace: str | None = None
) -> dict[str, Any] | None:
    """The `sidecred` container the webhook would build for this pod (None without a role).

    `namespace` defaults to the pod's metadata.namespace (a CREATE review may omit it).
    """
    injection = canonical_injection(pod, config, namespace)
    return None if injection is None else build_sidecar(injection)


def _shown(path: str, value: Any) -> str:
    """A value for a message; never the endpoint's auth token."""
    if sc.ENV_AUTH_TOKEN in path:
        return "a different token"
    return q(value, 160)


def _item_path(path: str, index: int, want: Any, got: Any) -> str:
    """`env[SIDECRED_PORT]` when both entries have that name, else `env[3]`."""
    name = want.get("name") if isinstance(want, dict) else None
    same = isinstance(got, dict) and got.get("name") == name
    return f"{path}[{name}]" if isinstance(name, str) and same else f"{path}[{index}]"


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where `actual` departs from `expected`, tolerating only the API server's defaults."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key in IGNORED_KEYS:
                continue
            where = f"{path}.{key}" if path else key
            if key not in actual:
                return f"{where} is missing"
            if key not in expected:
                if key in API_DEFAULTS and actual[key] == API_DEFAULTS[key]:
                    continue
                return f"{where} is set, and sidecred does not set it"
            if found := first_difference(expected[key], actual[key], where):
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
            if found := first_difference(want, got, _item_path(path, index, want, got)):
                return found
        if len(expected) != len(actual):
            what = "has an extra entry" if len(actual) > len(expected) else "lacks an entry"
            return f"{path}[{min(len(expected), len(actual))}] {what}"
        return None
    if expected != actual:
        return f"{path} is {_shown(path, actual)}, not {_shown(path, expected)}"
    return None


def image_repository(image: str) -> str:
    """An image reference without tag or digest, with Docker Hub's implicit names spelled out."""
    name = image.strip().split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = (head + "/" if head else "") + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) == 1:
        parts = ["docker.io", "library", *parts]
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *parts]
    return "/".join(parts).lower()


def calls_sidecar(container: Mapping[str, Any]) -> bool:
    """Whether the command line runs sidecred's sidecar, however it is spelled.

    Catches `sidecred sidecar`, another path to the binary, a shell string
    (`sh -c "exec sidecred sidecar"`), `python -m sidecred ...` and imports of
    sidecred modules, by looking for a word naming sidecred followed by `sidecar`
    or for `-m sidecred`; and `args: [sidecar]` without a command, for any image
    whose entrypoint is sidecred's CLI (the webhook's image holds the sidecar too).
    """
    if not container.get("command") and (container.get("args") or [None])[0] == "sidecar":
        return True  # an image whose entrypoint is sidecred's CLI, told to run the sidecar
    words = [w for part in _command(container) for w in _WORD_RE.split(part) if w]
    for index, word in enumerate(words):
        base = word.rsplit("/", 1)[-1]
        if not base.startswith("sidecred"):
            continue
        if base.startswith("sidecred.sidecar") or "sidecar" in words[index + 1 :]:
            return True
        if index and words[index - 1] == "-m":
            return True
    return False


def _command(container: Mapping[str, Any]) -> list[str]:
    return [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]


def forged_reason(container: Mapping[str, Any], config: Settings) -> str | None:
    """Why a container that is not the canonical sidecar could act as one (None if it can't)."""
    if container.get("name") == SIDECAR_NAME:
        return f"is named {q(SIDECAR_NAME)}, the name reserved for the sidecar"
    image = container.get("image")
    if isinstance(image, str) and image_repository(image) == image_repository(config.sidecar_image):
        return f"runs the sidecar image {q(image)}"
    if calls_sidecar(container):
        return f"runs the sidecar ({q(' '.join(_command(container)), 120)})"
    for entry in container.get("env") or []:
        if str(entry.get("name", "")).startswith(ENV_PREFIX):
            return f"sets {entry['name']}, which only the sidecar reads"
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") if isinstance(source, dict) else None
        if (
            isinstance(prefix, str)
            and prefix
            and (prefix.startswith(ENV_PREFIX) or ENV_PREFIX.startswith(prefix))
        ):
            return f"takes env with prefix {q(prefix)}, which can produce {ENV_PREFIX}* variables"
    if SA_TOKEN_VOLUME in mounted_volumes(container):
        return f"mounts {q(SA_TOKEN_VOLUME)}, the token only the sidecar may read"
    return None


def all_containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Init, regular and ephemeral containers."""
    yield from iter_containers(pod)
    for index, container in enumerate((pod.get("spec") or {}).get("ephemeralContainers") or []):
        yield "ephemeralContainers", index, container


def token_audiences(volume: Mapping[str, Any]) -> list[str]:
    """The audiences of the service-account tokens a projected volume requests."""
    projected = volume.get("projected")
    sources = projected.get("sources") if isinstance(projected, dict) else None
    if not isinstance(sources, list):
        return []
    tokens = [s.get("serviceAccountToken") for s in sources if isinstance(s, dict)]
    return [str(t.get("audience", "")) for t in tokens if isinstance(t, dict)]


def audience_problem(
    pod: Mapping[str, Any], config: Settings, injection: Injection | None
) -> Refusal | None:
    """A volume holding a sidecred-audience token anywhere but in the canonical sidecar's."""
    expected = {v["name"]: v for v in build_volumes(injection)} if injection else {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume.get("name", "")
        if name in RESERVED_VOLUMES:
            if name not in expected:
                return Refusal(
                    "forged-sidecar",
                    f"sidecred: volume {q(name)} is reserved for sidecred's sidecar, which this "
                    f"pod does not run; remove it (or annotate the pod with {config.annotation_key})",
                )
            if difference := first_difference(expected[name], volume):
                return Refusal(
                    "forged-sidecar",
                    f"sidecred: volume {q(name)} is not the one sidecred builds ({difference})",
                )
            continue
        for audience in token_audiences(volume):
            if audience in config.sidecred_audiences:
                return Refusal(
                    "sidecred-audience",
                    f"sidecred: volume {q(name)} requests a service-account token for audience "
                    f"{q(audience)}, which only sidecred's own sidecar may hold (IAM trusts it "
                    "as sidecred's); use another audience for your own tokens",
                )
    return None


def check_sidecar(
    pod: Mapping[str, Any], config: Settings, namespace: str | None = None
) -> SidecarVerdict:
    """Whether the pod runs exactly the canonical sidecar, and the first forged-sidecar problem.

    The sidecar must be the container named `sidecred`, in initContainers (native
    mode) or containers (container mode), equal to `canonical_sidecar` up to the
    API server's defaults. Any other container that could act as a sidecar
    (`forged_reason`) and any sidecred-audience token outside it is a problem.
    Raises Refusal (bad-annotation) when the role or option annotations are invalid.
    """
    injection = canonical_injection(pod, config, namespace)
    expected = build_sidecar(injection) if injection else None
    found = find_sidecar(pod)
    location = found[:2] if found else None
    canonical = False
    problem: Refusal | None = None
    if found is not None and expected is not None:
        wanted_list = "initContainers" if config.sidecar_mode == "native" else "containers"
        difference = (
            first_difference(expected, found[2])
            if found[0] == wanted_list
            else f"it is in {found[0]}, not {wanted_list}"
        )
        canonical = difference is None
        if difference:
            problem = Refusal(
                "forged-sidecar",
                f"sidecred: container {q(SIDECAR_NAME)} is not the sidecar sidecred builds for "
                f"this pod ({difference}); remove it and let the webhook add the sidecar",
            )
    for list_name, index, container in all_containers(pod):
        if problem is not None:
            break
        if canonical and (list_name, index) == location:
            continue
        if why := forged_reason(container, config):
            problem = Refusal(
                "forged-sidecar",
                f"sidecred: container {q(container.get('name', ''))} {why}; only the sidecar "
                "the webhook adds may do that",
            )
    problem = problem or audience_problem(pod, config, injection)
    return SidecarVerdict(canonical=canonical, problem=problem, location=location)
