"""Admission fixtures: every file in fixtures/ through the pure decision, plus the
properties every injected pod must have (schema-valid, idempotent, restricted-safe)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from sidecred.pods.annotations import CONTAINER_ROLES_KEY
from sidecred.pods.names import SA_TOKEN_VOLUME, SIDECAR_NAME
from sidecred.pods.pod import iter_containers
from sidecred.pods.sidecar_spec import FULL_URI
from sidecred.webhook.decide import decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch, init_before_sidecar
from tests.webhook.fixture_cases import (
    FIXED_TOKEN,
    config_of,
    fixture_paths,
    load_case,
    pod_of,
    request_of,
    run_case,
)

SCHEMA_VERSION = kubernetes_validate.latest_version()
PATHS = fixture_paths()


def test_enough_fixtures_cover_every_deny_path() -> None:
    reasons = {load_case(p)["expect"].get("reason") for p in PATHS}
    assert len(PATHS) >= 25
    deny_paths = {
        "no-policy", "not-permitted", "bad-policy", "host-network", "forged-sidecar",
        "role-changed", "image-changed", "debug-target", "shared-kernel-view", "node-access",
        "bad-annotation",
        "namespace-unavailable", "foreign-endpoint", "not-injected", "sidecred-audience",
        "token-request", "sidecar-exec",
    }  # fmt: skip
    assert deny_paths <= reasons, deny_paths - reasons


def env_map(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def containers_by_name(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for _, _, c in iter_containers(pod)}


def assert_subset(expected: Any, actual: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}/{key} missing"
            assert_subset(value, actual[key], f"{where}/{key}")
    else:
        assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


def sort_ops(ops: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(op, sort_keys=True) for op in ops)


def check_restricted_sidecar(pod: dict[str, Any]) -> None:
    """The sidecar satisfies Pod Security "restricted" by itself, whatever the pod sets."""
    sidecar = containers_by_name(pod)[SIDECAR_NAME]
    ctx = sidecar["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["readOnlyRootFilesystem"] is True
    assert "hostPort" not in json.dumps(sidecar.get("ports"))
    for volume in pod["spec"].get("volumes") or []:
        if volume["name"].startswith("sidecred"):
            assert set(volume) - {"name"} <= {"emptyDir", "projected"}


def original_env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env") or []}


def check_injected_pod(case: dict[str, Any], patched: dict[str, Any]) -> None:
    """Properties every injected pod has, whatever the fixture."""
    assert kubernetes_validate.validate(patched, SCHEMA_VERSION, strict=True)
    check_restricted_sidecar(patched)
    # Watchers (broker, events, audit) select sidecred's pods by this label.
    assert patched["metadata"]["labels"]["sidecred.dev/injected"] == "true"
    config = config_of(case)
    skip = {
        s.strip()
        for s in case["pod"]["metadata"]
        .get("annotations", {})
        .get("sidecred.dev/skip-containers", "")
        .split(",")
    }
    original = containers_by_name(pod_of(case))
    skip |= set(init_before_sidecar(patched, config))
    annotations = case["pod"]["metadata"].get("annotations", {})
    own_roles = json.loads(annotations.get(CONTAINER_ROLES_KEY, "{}"))
    for name, container in containers_by_name(patched).items():
        mounts = {m["name"] for m in container.get("volumeMounts") or []}
        if name == SIDECAR_NAME:
            assert container["command"] == ["sidecred", "sidecar"]
            assert (SA_TOKEN_VOLUME in mounts) == (config.credential_source != "assume-role")
            continue
        assert SA_TOKEN_VOLUME not in mounts, f"{name} must not see the service-account token"
        # One container's token is never another's (sidecred.dev/container-roles).
        token_volumes = {m for m in mounts if m.startswith("sidecred-token")}
        if own_roles.get(name):
            assert token_volumes <= {f"sidecred-token-{name}"}, (name, token_volumes)
        else:
            assert token_volumes <= {"sidecred-token"}, (name, token_volumes)
        # User env is kept exactly, in order, ahead of anything added.
        before = original[name].get("env") or []
        assert (container.get("env") or [])[: len(before)] == before
        gets_role = own_roles.get(
            name, "" if name in own_roles else annotations.get(config.annotation_key)
        )
        if name not in skip and gets_role:
            assert FULL_URI in env_map(container), f"{name} lacks {FULL_URI}"
        if name not in skip and not gets_role and name not in original_env_names(original[name]):
            assert FULL_URI not in env_map(container), f"{name} should get no credentials"
    # Run again (reinvocationPolicy IfNeeded): nothing is added twice.
    again = decide_mutation(
        dict(request_of(case), object=patched),
        case.get("namespace"),
        config,
        new_token=lambda: "a-different-token",  # the present sidecar's tokens are kept
    )
    assert again.allowed and again.patch is None, again
    # The validating webhook, after all mutations, accepts the result.
    validated = decide_validation(
        dict(request_of(case), object=patched), case.get("namespace"), config
    )
    assert validated.allowed, validated.message


def check_properties(expect: dict[str, Any], patched: dict[str, Any]) -> None:
    by_name = containers_by_name(patched)
    spec = patched["spec"]
    if "init_order" in expect:
        assert [c["name"] for c in spec.get("initContainers") or []] == expect["init_order"]
    if "container_order" in expect:
        assert [c["name"] for c in spec["containers"]] == expect["container_order"]
    for name, wanted in (expect.get("env") or {}).items():
        actual = env_map(by_name[name])
        for var, value in wanted.items():
            if value is None:
                assert var not in actual, f"{name} should not have {var}"
            else:
                assert actual.get(var) == value, f"{name} {var}: {actual.get(var)!r}"
    for name, wanted in (expect.get("mounts") or {}).items():
        mounts = {m["name"]: m for m in by_name[name].get("volumeMounts") or []}
        assert sorted(n for n in mounts if n.startswith("sidecred")) == sorted(wanted)
    if "sidecred_volumes" in expect:
        names = [v["name"] for v in spec.get("volumes") or [] if v["name"].startswith("sidecred")]
        assert sorted(names) == sorted(expect["sidecred_volumes"])
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for name, wanted in (expect.get("volumes") or {}).items():
        assert_subset(wanted, volumes[name], f"volume {name}")
    if "sidecar" in expect:
        assert_subset(expect["sidecar"], by_name[SIDECAR_NAME], "sidecar")
    if "annotations" in expect:
        assert_subset(expect["annotations"], patched["metadata"]["annotations"], "annotations")
    if "image_pull_secrets" in expect:
        names = [s["name"] for s in spec.get("imagePullSecrets") or []]
        assert names == expect["image_pull_secrets"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_fixture(path: Path) -> None:
    case = load_case(path)
    expect = case["expect"]
    decision = run_case(case)

    assert decision.allowed is expect["allowed"], decision.message
    assert decision.reason == expect["reason"]
    assert decision.code == expect.get("code", 200 if expect["allowed"] else 403)
    messages = expect.get("message") or []
    for fragment in [messages] if isinstance(messages, str) else messages:
        assert fragment in decision.message
    if not expect["allowed"]:
        assert decision.message.startswith("sidecred: ") and "Traceback" not in decision.message
        assert decision.patch is None
    if "warnings" in expect:
        if not expect["warnings"]:
            assert decision.warnings == ()
        for fragment in expect["warnings"]:
            assert any(fragment in w for w in decision.warnings), (fragment, decision.warnings)
    if "patch" in expect:
        if expect["patch"] is None:
            assert decision.patch is None
        else:
            assert decision.patch is not None
            assert sort_ops(decision.patch) == sort_ops(expect["patch"])

    if decision.allowed and decision.patch:
        patched = apply_patch(pod_of(case), decision.patch)
        check_injected_pod(case, patched)
        check_properties(expect, patched)
        for fragment in expect.get("token_in", []):
            assert FIXED_TOKEN in json.dumps(containers_by_name(patched)[fragment]["env"])


def test_threats_and_reasons_are_documented_in_security_md() -> None:
    """Each fixture's `threat:` is a SECURITY.md section; each denial reason is in its table."""
    security = (Path(__file__).parents[2] / "SECURITY.md").read_text(encoding="utf-8")
    headings = {line[3:].strip() for line in security.splitlines() if line.startswith("## ")}
    cases = [load_case(p) for p in PATHS]
    threats = {case["threat"] for case in cases if "threat" in case}
    assert threats and threats <= headings, threats - headings
    reasons = {c["expect"]["reason"] for c in cases if not c["expect"]["allowed"]}
    table = {line.split("`")[1] for line in security.splitlines() if line.startswith("| `")}
    assert reasons <= table, reasons - table
