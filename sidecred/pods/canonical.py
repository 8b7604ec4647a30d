"""The canonical sidecar (SECURITY.md, Path 2): the one definition of "the sidecar" for a pod.

Admission and the broker ask the same two questions, so both import this module:
what `sidecred` container the webhook would build for a pod (`canonical_sidecar`),
and whether the pod runs the sidecar and nothing else that could act as one
(`check_sidecar`). "Already injected" is decided here, never by an annotation.

A container is the sidecar by the properties that decide who gets which role,
not by equality with what today's configuration would build: a pod injected
under an earlier configuration (another image tag, region or session length), by
a second webhook replica still on it, or changed afterwards by another mutating
webhook (env on every container, a registry rewrite) runs a genuine sidecar.
What is compared, and why each matters:

- the program: an image from the configured repositories (`--sidecar-image`'s and
  `--sidecar-repositories`, any tag or digest), the command, no args or working
  directory, and no command of anyone else run inside it (exec probes or hooks);
- the identity it serves: the role env equal to the pod's resolved annotation, the
  session name and external id from the pod's annotations, and the pod's name,
  namespace, uid and service account from the downward API (the session name);
- the source and where its token may go: the credential source, the broker URL and
  the token paths as configured, and no env that could redirect or expose the
  token or change the code it runs unless configuration set it (`redirecting_env`);
- its token: the projected volume with the configured audience, mounted by the
  sidecar alone, and no other volume mounted into the sidecar;
- its security context: at least as strict as the one the webhook builds.

Not compared, because none changes who gets which role: resources, pull policy,
ports, probe and hook timings (not their handlers), terminationMessagePolicy, the
list it sits in (native or container mode), the region (syntax checked: it names
an AWS endpoint), session length, the ports in its env, token mode, drain time,
token lifetime, the broker CA
(it only decides whom the sidecar trusts at the configured broker URL, with a
token good for nothing but this pod's own role there), and env that touches none
of the above (`TZ`, `LANG`).

Pure: a plain pod dict and a Settings in, a verdict out. Refusal is raised only
for a role or option annotation that cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecred.pods.annotations import (
    CONTAINER_ROLES_KEY,
    PodOptions,
    annotations_of,
    q,
    read_pod_options,
)
from sidecred.pods.container_roles import ContainerRoles, read_container_roles
from sidecred.pods.container_tokens import token_problem
from sidecred.pods.images import image_repository
from sidecred.pods.names import (
    RESERVED_VOLUMES,
    SA_TOKEN_VOLUME,
    SIDECAR_COMMAND,
    SIDECAR_NAME,
)
from sidecred.pods.pod import all_containers, find_sidecar, mounted_volumes
from sidecred.pods.refusal import Refusal
from sidecred.pods.roles import RoleError, resolve_role
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import (
    WAIT_READY_COMMAND,
    Injection,
    build_sidecar,
    build_volumes,
    own_sidecar_env,
    plan_injection,
    port_of,
    sidecar_mounts,
)
from sidecred.sidecar import config as sc

__all__ = [
    "SidecarVerdict",
    "all_containers",
    "calls_sidecar",
    "canonical_injection",
    "canonical_sidecar",
    "check_sidecar",
    "forged_reason",
    "image_repository",
    "pod_role",
    "redirecting_env",
    "served_port",
    "sidecar_difference",
    "token_audiences",
]

ENV_PREFIX = "SIDECRED_"
# A token-mode-env sidecar's token is random; the canonical one for a pod that has
# none yet holds this marker, which no real sidecar carries, so it never matches.
UNSET_TOKEN = "<generated at injection>"
TERMINATION_LOG = "/dev/termination-log"
_WORD_RE = re.compile(r"[^\w./-]+")
# An AWS region name; it becomes part of the STS host name (sts.<region>.amazonaws.com).
REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_NUMBER_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")


def _int_between(low: int, high: int) -> Callable[[str], bool]:
    return lambda value: value.isascii() and value.isdigit() and low <= int(value) <= high


# Sidecar settings the webhook writes that do not decide who gets which role, each
# with the form its value must have (the sidecar reads it; a region is a host name).
FREE_ENV: dict[str, tuple[Callable[[str], bool], str]] = {
    sc.ENV_SESSION_DURATION: (
        _int_between(sc.STS_MIN_SESSION_DURATION, sc.MAX_SESSION_DURATION),
        "a session length in seconds",
    ),
    sc.ENV_REGION: (lambda value: REGION_RE.fullmatch(value) is not None, "an AWS region name"),
    sc.ENV_PORT: (_int_between(1, 65535), "a port"),
    sc.ENV_HEALTH_PORT: (_int_between(1, 65535), "a port"),
    sc.ENV_SIDECAR_MODE: (sc.SIDECAR_MODES.__contains__, "a sidecar mode"),
    sc.ENV_TOKEN_MODE: (sc.TOKEN_MODES.__contains__, "a token mode"),
    sc.ENV_DRAIN_SECONDS: (
        lambda value: _NUMBER_RE.fullmatch(value) is not None,
        "a number of seconds",
    ),
    sc.ENV_BROKER_CA: (lambda value: True, "a CA bundle"),
}

# Env no container may give the sidecar unless configuration does: it decides where
# the sidecar sends its token (endpoints, proxies, name resolution), whom it trusts
# (CA bundles), what it writes where (TLS key logs) or what code it runs (loader and
# interpreter paths; HOME holds the AWS config files).
_REDIRECTING_PREFIXES = ("SIDECRED_", "AWS_", "SSL_", "OPENSSL_", "PYTHON", "LD_", "CURL_")
_REDIRECTING_SUFFIXES = ("_PROXY", "_CA_BUNDLE", "_CA_CERTS")
_REDIRECTING_NAMES = frozenset(
    {"PATH", "HOME", "SSLKEYLOGFILE", "GCONV_PATH", "LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"}
)


def redirecting_env(name: str) -> bool:
    """Whether env `name` on the sidecar could redirect or expose its token, or change its code."""
    upper = name.upper()
    return (
        upper.startswith(_REDIRECTING_PREFIXES)
        or upper.endswith(_REDIRECTING_SUFFIXES)
        or upper in _REDIRECTING_NAMES
    )


# Container fields the rules below judge; any other field with a value is refused.
_JUDGED_FIELDS = frozenset(
    {
        "name", "image", "command", "args", "env", "volumeMounts", "securityContext",
        "restartPolicy", "lifecycle", "startupProbe", "livenessProbe", "readinessProbe",
        "terminationMessagePath",
    }
)  # fmt: skip
# Not compared: the API server, admission plugins (AlwaysPullImages), other webhooks
# and new releases change them, and none decides who gets which role.
_FREE_FIELDS = frozenset(
    {"resources", "resizePolicy", "imagePullPolicy", "terminationMessagePolicy", "ports"}
)


@dataclass(frozen=True)
class SidecarVerdict:
    """Whether the pod runs the canonical sidecar, and the first forged-sidecar problem."""

    canonical: bool
    problem: Refusal | None = None
    location: tuple[str, int] | None = None  # (list name, index) of the container named sidecred
    injection: Injection | None = None  # what the webhook plans for the pod (None: no role)


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


def wants_sidecar(pod: Mapping[str, Any], config: Settings) -> bool:
    """Whether the pod asks for credentials: a role for the pod, or for some of its containers."""
    annotations = annotations_of(pod)
    return config.annotation_key in annotations or CONTAINER_ROLES_KEY in annotations


def pod_roles(
    pod: Mapping[str, Any], config: Settings
) -> tuple[str | None, PodOptions, ContainerRoles]:
    """The pod's resolved role (None without one), its options and its containers' own
    roles; Refusal if unusable."""
    role_arn = pod_role(pod, config)
    options = read_pod_options(annotations_of(pod), config.session_duration, config.token_mode)
    roles = read_container_roles(pod, role_arn, config.base_role_arn, options.skip_containers)
    return role_arn, options, roles


def _namespace_of(pod: Mapping[str, Any], namespace: str | None) -> str:
    return namespace or str((pod.get("metadata") or {}).get("namespace") or "")


def canonical_injection(
    pod: Mapping[str, Any], config: Settings, namespace: str | None = None
) -> Injection | None:
    """The Injection the webhook plans for this pod; None when the pod asks for no role."""
    if not wants_sidecar(pod, config):
        return None
    role_arn, options, roles = pod_roles(pod, config)
    return plan_injection(
        pod, role_arn, options, config, lambda: UNSET_TOKEN, _namespace_of(pod, namespace), roles
    )


def canonical_sidecar(
    pod: Mapping[str, Any], config: Settings, namespace: str | None = None
) -> dict[str, Any] | None:
    """The `sidecred` container the webhook would build for this pod (None without a role).

    `namespace` defaults to the pod's metadata.namespace (a CREATE review may omit it).
    """
    injection = canonical_injection(pod, config, namespace)
    return None if injection is None else build_sidecar(injection)


def served_port(pod: Mapping[str, Any], config: Settings) -> int:
    """The credential port of the pod's sidecar (the configured one when it has none)."""
    found = find_sidecar(pod)
    return (port_of(found[2]) if found else None) or config.sidecar_port


def _shown(name: str, value: Any) -> str:
    """A value for a message; never the endpoint's auth token."""
    if name == sc.ENV_AUTH_TOKEN:
        return "a different token"
    if name == sc.ENV_CONTAINER_ROLES and "auth_token" in str(value):
        return "a different value (its auth tokens not shown)"
    return q(value, 160)


def _empty(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})


def _field_ref(entry: Mapping[str, Any]) -> tuple[str, Any] | None:
    source = entry.get("valueFrom")
    if not isinstance(source, dict) or set(source) != {"fieldRef"}:
        return None
    ref = source["fieldRef"]
    if not isinstance(ref, dict):
        return None
    return (ref.get("apiVersion") or "v1", ref.get("fieldPath"))  # the API server's default


def _same_env(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    if "valueFrom" in want:
        return "value" not in got and _field_ref(got) == _field_ref(want)
    return "valueFrom" not in got and got.get("value", "") == want["value"]


def _entry_problem(
    entry: Mapping[str, Any], expected: Mapping[str, Mapping[str, Any]], config: Settings
) -> str | None:
    """Why one env entry of the sidecar is not one it may carry (None if it may)."""
    name = str(entry.get("name", ""))
    literal = "valueFrom" not in entry
    value = str(entry.get("value", ""))
    if name in FREE_ENV:
        valid, what = FREE_ENV[name]
        if literal and valid(value):
            return None
        shown = q(value, 80) if literal else "taken from elsewhere (valueFrom)"
        return f"env {name} is {shown}, not a literal value that is {what}"
    if name in expected:
        if _same_env(expected[name], entry):
            return None
        want = expected[name]
        shown_want = _shown(name, want["value"]) if "value" in want else "the downward API"
        shown_got = _shown(name, value) if literal else "taken from elsewhere (valueFrom)"
        return f"env {name} is {shown_got}, not {shown_want}"
    if literal and (name, value) in config.configured_sidecar_env:
        return None
    if any(name == configured for configured, _ in config.configured_sidecar_env):
        return (
            f"env {name} has a value configuration does not give (--sidecar-extra-env, or "
            "--sidecar-accepted-env for sidecars injected before a change)"
        )
    if redirecting_env(name):
        return (
            f"env {name} is set, and only configuration may give the sidecar such env "
            "(it could redirect or expose its token, or change the code it runs)"
        )
    return None


def _env_problem(container: Mapping[str, Any], injection: Injection) -> str | None:
    expected = {entry["name"]: entry for entry in own_sidecar_env(injection)}
    seen = set()
    for entry in container.get("env") or []:
        seen.add(entry.get("name"))
        if problem := _entry_problem(entry, expected, injection.config):
            return problem
    for name in expected:
        if name not in FREE_ENV and name not in seen:
            return f"env {name} is missing"
    return None


def _mounts_problem(container: Mapping[str, Any], expected: list[dict[str, Any]]) -> str | None:
    """The sidecar mounts exactly its own volumes, where the webhook puts them."""
    wanted = {mount["name"]: mount for mount in expected}
    names = [mount.get("name") for mount in container.get("volumeMounts") or []]
    for mount in container.get("volumeMounts") or []:
        name = mount.get("name")
        if name not in wanted:
            return (
                f"volumeMounts has {q(name)}, which the sidecar does not mount (another volume "
                "could feed it what it reads or show what it writes)"
            )
        want = wanted[name]
        extra = {
            k: v
            for k, v in mount.items()
            if k not in ("name", "mountPath", "readOnly", "recursiveReadOnly")
        }
        if (
            names.count(name) > 1
            or mount.get("mountPath") != want["mountPath"]
            or bool(mount.get("readOnly")) != bool(want.get("readOnly"))
            or any(not _empty(v) and v != "None" for v in extra.values())
        ):
            return f"volumeMounts[{name}] is not where and how sidecred mounts it"
    missing = [name for name in wanted if name not in names]
    return f"volumeMounts lacks {q(missing[0])}" if missing else None


# Pod Security "baseline" SELinux types; any other (spc_t, unconfined_t) is less confined.
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_CONFINED_PROFILES = frozenset({"RuntimeDefault", "Localhost"})


def _security_problem(context: Any) -> str | None:
    """Whether a security context is at least as strict as the one the webhook builds."""
    if not isinstance(context, dict):
        return "securityContext is missing"
    capabilities = context.get("capabilities") or {}
    selinux = context.get("seLinuxOptions") or {}
    checks = (
        (context.get("runAsNonRoot") is True, "runAsNonRoot is not true"),
        (_non_root_id(context.get("runAsUser")), "runAsUser is not a non-root user"),
        (_non_root_id(context.get("runAsGroup")), "runAsGroup is not a non-root group"),
        (context.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true"),
        (context.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false"),
        (not context.get("privileged"), "privileged is set"),
        ("ALL" in (capabilities.get("drop") or []), "capabilities do not drop ALL"),
        (not capabilities.get("add"), "capabilities add some"),
        (
            (context.get("seccompProfile") or {}).get("type") in _CONFINED_PROFILES,
            "seccompProfile is not RuntimeDefault or Localhost",
        ),
        (context.get("procMount") in (None, "Default"), "procMount is not Default"),
        (
            selinux.get("type", "") in _SELINUX_TYPES and not selinux.get("user") and not selinux.get("role"),
            "seLinuxOptions are less confined than the runtime's default",
        ),
        (
            (context.get("appArmorProfile") or {"type": "RuntimeDefault"}).get("type") in _CONFINED_PROFILES,
            "appArmorProfile is not RuntimeDefault or Localhost",
        ),
        (not (context.get("windowsOptions") or {}).get("hostProcess"), "windowsOptions.hostProcess is set"),
    )  # fmt: skip
    for holds, problem in checks:
        if not holds:
            return f"securityContext is less strict than sidecred's: {problem}"
    return None


def _non_root_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _handler_problem(where: str, handler: Any, allowed_exec: list[str] | None) -> str | None:
    """Probes and hooks: no command of anyone else runs inside the sidecar, no other host."""
    if not isinstance(handler, dict):
        return None
    run = handler.get("exec")
    if run is not None and (allowed_exec is None or run != {"command": allowed_exec}):
        return f"{where} runs a command inside the sidecar ({q(run, 120)})"
    http_get = handler.get("httpGet")
    if isinstance(http_get, dict) and http_get.get("host"):
        return f"{where}.httpGet asks another host ({q(http_get['host'])})"
    return None


def _program_problem(container: Mapping[str, Any], config: Settings) -> str | None:
    image = container.get("image")
    if not isinstance(image, str) or image_repository(image) not in config.sidecar_repository_set:
        accepted = ", ".join(sorted(config.sidecar_repository_set))
        return (
            f"image {q(image)} is not from a sidecar repository ({accepted}; "
            "--sidecar-repositories lists mirrors)"
        )
    if container.get("command") != SIDECAR_COMMAND:
        return f"command is {q(container.get('command'))}, not {q(SIDECAR_COMMAND)}"
    if not _empty(container.get("args")):
        return f"args is set ({q(container.get('args'), 120)}), and sidecred sets none"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if problem := _handler_problem(probe, container.get(probe), None):
            return problem
    lifecycle = container.get("lifecycle") or {}
    for hook in sorted(lifecycle) if isinstance(lifecycle, dict) else ():
        allowed = list(WAIT_READY_COMMAND) if hook == "postStart" else None
        if problem := _handler_problem(f"lifecycle.{hook}", lifecycle[hook], allowed):
            return problem
    # The kubelet reports that file's content in the pod's status, readable by all.
    if container.get("terminationMessagePath") not in (None, TERMINATION_LOG):
        return f"terminationMessagePath is {q(container['terminationMessagePath'])}"
    for key in sorted(set(container) - _JUDGED_FIELDS - _FREE_FIELDS):
        if not _empty(container[key]):
            return f"{key} is set, and sidecred does not set it"
    return None


def _placement_problem(list_name: str, container: Mapping[str, Any]) -> str | None:
    restart = container.get("restartPolicy")
    if list_name == "initContainers" and restart != "Always":
        return "it is an init container without restartPolicy Always, not a native sidecar"
    if list_name == "containers" and restart not in (None, "Always"):
        return f"restartPolicy is {q(restart)}"
    return None


def sidecar_difference(
    list_name: str, container: Mapping[str, Any], injection: Injection
) -> str | None:
    """Why `container` (named sidecred, in `list_name`) is not the pod's sidecar, or None.

    Compares the properties that decide who gets which role (the module docstring
    lists them and what is left alone).
    """
    expected_mounts = sidecar_mounts(injection)
    return (
        _placement_problem(list_name, container)
        or _program_problem(container, injection.config)
        or _env_problem(container, injection)
        or _mounts_problem(container, expected_mounts)
        or _security_problem(container.get("securityContext"))
    )


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
    if isinstance(image, str) and image_repository(image) in config.sidecar_repository_set:
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


def token_audiences(volume: Mapping[str, Any]) -> list[str]:
    """The audiences of the service-account tokens a projected volume requests."""
    projected = volume.get("projected")
    sources = projected.get("sources") if isinstance(projected, dict) else None
    if not isinstance(sources, list):
        return []
    tokens = [s.get("serviceAccountToken") for s in sources if isinstance(s, dict)]
    return [str(t.get("audience", "")) for t in tokens if isinstance(t, dict)]


def _reserved_volume_difference(
    volume: Mapping[str, Any], expected: Mapping[str, Any]
) -> str | None:
    """A reserved volume is of the kind sidecred builds; sizes and lifetimes are left alone."""
    kinds = sorted(k for k, v in volume.items() if k != "name" and not _empty(v))
    want = next(k for k in expected if k != "name")
    if kinds != [want] or not isinstance(volume[want], dict):
        return f"it is {q(kinds)}, not {q(want)}"
    if want == "emptyDir":
        medium = volume["emptyDir"].get("medium")
        return None if medium == "Memory" else f'its medium is {q(medium)}, not "Memory"'
    sources = volume["projected"].get("sources")
    source = sources[0] if isinstance(sources, list) and len(sources) == 1 else None
    token = source.get("serviceAccountToken") if isinstance(source, dict) else None
    want_token = expected["projected"]["sources"][0]["serviceAccountToken"]
    if (
        not isinstance(token, dict)
        or set(source or {}) != {"serviceAccountToken"}
        or set(token) - {"audience", "expirationSeconds", "path"}
        or token.get("path") != want_token["path"]
    ):
        return 'it is not one service-account token at path "token"'
    if token.get("audience") != want_token["audience"]:
        return f"its audience is {q(token.get('audience'))}, not {q(want_token['audience'])}"
    return None


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
            if difference := _reserved_volume_difference(volume, expected[name]):
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
    """Whether the pod runs the canonical sidecar, and the first forged-sidecar problem.

    The sidecar is the container named `sidecred`, in initContainers (a native
    sidecar) or containers, with the properties `sidecar_difference` compares. Any
    other container that could act as a sidecar (`forged_reason`) and any
    sidecred-audience token outside it is a problem. A pure function of the pod
    and the settings. Raises Refusal (bad-annotation) when the role or option
    annotations are invalid.
    """
    injection = canonical_injection(pod, config, namespace)
    found = find_sidecar(pod)
    location = found[:2] if found else None
    canonical = False
    problem: Refusal | None = None
    if found is not None and injection is not None:
        difference = sidecar_difference(found[0], found[2], injection)
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
    problem = problem or audience_problem(pod, config, injection) or token_problem(pod, injection)
    return SidecarVerdict(canonical, problem, location, injection)
