"""Pod Security Standards: every injected fixture pod whose input passes "restricted" still does.

One check per rule of the official list (kubernetes.io/docs/concepts/security/
pod-security-standards), baseline then restricted, applied to the patched pod.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sidecred.webhook.mutate import apply_patch
from tests.webhook.fixture_cases import fixture_paths, load_case, pod_of, run_case

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
APPARMOR_ALLOWED = {"RuntimeDefault", "Localhost"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}


def all_containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def ctx(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def pod_ctx(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"].get("securityContext") or {}


# --- baseline -----------------------------------------------------------------------
def host_process(pod: dict[str, Any]) -> bool:
    contexts = [pod_ctx(pod), *(ctx(c) for c in all_containers(pod))]
    return all(not (c.get("windowsOptions") or {}).get("hostProcess") for c in contexts)


def host_namespaces(pod: dict[str, Any]) -> bool:
    return not any(pod["spec"].get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))


def privileged(pod: dict[str, Any]) -> bool:
    return all(not ctx(c).get("privileged") for c in all_containers(pod))


def baseline_capabilities(pod: dict[str, Any]) -> bool:
    return all(
        set((ctx(c).get("capabilities") or {}).get("add") or []) <= BASELINE_CAPABILITIES
        for c in all_containers(pod)
    )


def host_path_volumes(pod: dict[str, Any]) -> bool:
    return all("hostPath" not in v for v in pod["spec"].get("volumes") or [])


def host_ports(pod: dict[str, Any]) -> bool:
    return all(not p.get("hostPort") for c in all_containers(pod) for p in c.get("ports") or [])


def apparmor(pod: dict[str, Any]) -> bool:
    contexts = [pod_ctx(pod), *(ctx(c) for c in all_containers(pod))]
    profiles = [(c.get("appArmorProfile") or {}).get("type") for c in contexts]
    annotations = (pod["metadata"].get("annotations") or {}).items()
    legacy = [v for k, v in annotations if k.startswith("container.apparmor.security.beta")]
    return all(p is None or p in APPARMOR_ALLOWED for p in profiles) and all(
        v == "runtime/default" or v.startswith("localhost/") for v in legacy
    )


def selinux(pod: dict[str, Any]) -> bool:
    contexts = [pod_ctx(pod), *(ctx(c) for c in all_containers(pod))]
    options = [c.get("seLinuxOptions") or {} for c in contexts]
    return all(
        o.get("type", "") in SELINUX_TYPES and not o.get("user") and not o.get("role")
        for o in options
    )


def proc_mount(pod: dict[str, Any]) -> bool:
    return all(ctx(c).get("procMount", "Default") == "Default" for c in all_containers(pod))


def baseline_seccomp(pod: dict[str, Any]) -> bool:
    contexts = [pod_ctx(pod), *(ctx(c) for c in all_containers(pod))]
    return all((c.get("seccompProfile") or {}).get("type") != "Unconfined" for c in contexts)


def sysctls(pod: dict[str, Any]) -> bool:
    return all(s.get("name") in SAFE_SYSCTLS for s in pod_ctx(pod).get("sysctls") or [])


# --- restricted ---------------------------------------------------------------------
def volume_types(pod: dict[str, Any]) -> bool:
    return all(
        set(v) - {"name"} <= RESTRICTED_VOLUME_TYPES for v in pod["spec"].get("volumes") or []
    )


def privilege_escalation(pod: dict[str, Any]) -> bool:
    return all(ctx(c).get("allowPrivilegeEscalation") is False for c in all_containers(pod))


def running_as_non_root(pod: dict[str, Any]) -> bool:
    pod_level = pod_ctx(pod).get("runAsNonRoot")
    for container in all_containers(pod):
        value = ctx(container).get("runAsNonRoot", pod_level)
        if value is not True:
            return False
    return pod_level is not False or all(
        ctx(c).get("runAsNonRoot") is True for c in all_containers(pod)
    )


def running_as_non_root_user(pod: dict[str, Any]) -> bool:
    contexts = [pod_ctx(pod), *(ctx(c) for c in all_containers(pod))]
    return all(c.get("runAsUser") != 0 for c in contexts)


def restricted_seccomp(pod: dict[str, Any]) -> bool:
    pod_type = (pod_ctx(pod).get("seccompProfile") or {}).get("type")
    return all(
        (ctx(c).get("seccompProfile") or {}).get("type", pod_type) in SECCOMP_ALLOWED
        for c in all_containers(pod)
    )


def restricted_capabilities(pod: dict[str, Any]) -> bool:
    for container in all_containers(pod):
        capabilities = ctx(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            return False
        if not set(capabilities.get("add") or []) <= {"NET_BIND_SERVICE"}:
            return False
    return True


RULES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "baseline/hostProcess": host_process,
    "baseline/host-namespaces": host_namespaces,
    "baseline/privileged": privileged,
    "baseline/capabilities": baseline_capabilities,
    "baseline/hostPath-volumes": host_path_volumes,
    "baseline/host-ports": host_ports,
    "baseline/apparmor": apparmor,
    "baseline/selinux": selinux,
    "baseline/proc-mount": proc_mount,
    "baseline/seccomp": baseline_seccomp,
    "baseline/sysctls": sysctls,
    "restricted/volume-types": volume_types,
    "restricted/privilege-escalation": privilege_escalation,
    "restricted/running-as-non-root": running_as_non_root,
    "restricted/running-as-non-root-user": running_as_non_root_user,
    "restricted/seccomp": restricted_seccomp,
    "restricted/capabilities": restricted_capabilities,
}


def harden(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod with the settings "restricted" asks of a workload (what its author would add)."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec.setdefault("securityContext", {}).update(
        runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"}
    )
    for container in all_containers(pod):
        container.setdefault("securityContext", {}).update(
            allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}
        )
    return pod


def restricted_cases() -> list[tuple[str, dict[str, Any]]]:
    """(fixture, patched pod) for every injected fixture whose input passes restricted,
    as written or once hardened as its author would for a restricted namespace."""
    cases = []
    for path in fixture_paths():
        case = load_case(path)
        if case.get("webhook", "mutate") != "mutate":
            continue
        for variant, pod in (("as-written", case["pod"]), ("hardened", harden(case["pod"]))):
            if not all(rule(pod) for rule in RULES.values()):
                continue
            variant_case = dict(case, pod=pod)
            decision = run_case(variant_case)
            if decision.allowed and decision.patch:
                # A reinvocation case's patch applies to the pod as injected and edited.
                patched = apply_patch(pod_of(variant_case), decision.patch)
                cases.append((f"{path.stem}-{variant}", patched))
    return cases


CASES = restricted_cases()


def test_enough_fixtures_are_restricted_and_injected() -> None:
    assert len(CASES) >= 12, [name for name, _ in CASES]


@pytest.mark.parametrize(("fixture", "patched"), CASES, ids=[name for name, _ in CASES])
def test_patched_pod_satisfies_every_rule(fixture: str, patched: dict[str, Any]) -> None:
    broken = [name for name, rule in sorted(RULES.items()) if not rule(patched)]
    assert not broken, f"{fixture}: the patched pod breaks {', '.join(broken)}"


def test_the_rules_catch_what_they_name() -> None:
    """Each rule fails on a pod that breaks it, so a passing rule means something."""
    base = {
        "metadata": {},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "app",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    assert all(rule(base) for rule in RULES.values())
    breaks = {
        "baseline/host-namespaces": lambda p: p["spec"].update(hostPID=True),
        "baseline/privileged": lambda p: ctx(p["spec"]["containers"][0]).update(privileged=True),
        "baseline/hostPath-volumes": lambda p: p["spec"].update(
            volumes=[{"name": "h", "hostPath": {"path": "/"}}]
        ),
        "restricted/volume-types": lambda p: p["spec"].update(
            volumes=[{"name": "h", "nfs": {"server": "x", "path": "/"}}]
        ),
        "restricted/privilege-escalation": lambda p: ctx(p["spec"]["containers"][0]).update(
            allowPrivilegeEscalation=True
        ),
        "restricted/running-as-non-root-user": lambda p: pod_ctx(p).update(runAsUser=0),
        "restricted/capabilities": lambda p: ctx(p["spec"]["containers"][0]).update(
            capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}
        ),
        "restricted/seccomp": lambda p: pod_ctx(p).pop("seccompProfile"),
        "baseline/sysctls": lambda p: pod_ctx(p).update(sysctls=[{"name": "kernel.msgmax"}]),
    }
    for name, breaker in breaks.items():
        pod = copy.deepcopy(base)
        breaker(pod)
        assert not RULES[name](pod), name
