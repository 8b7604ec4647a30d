"""sidecred.dev/container-roles through the pure admission decision: every bad map is a
denial with a clear message, never a server error; good maps give each container its own
role, URI and token, and session names <namespace>.<pod>.<container>."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecred.kube.sidecar_health import container_roles, injected_role, roles_by_container
from sidecred.pods.container_roles import MAX_CHARS, MAX_ENTRIES, MAX_ROLE_CONTAINER_CHARS
from sidecred.pods.session import session_pod_label
from sidecred.pods.settings import Settings
from sidecred.sidecar.session_name import container_session_name
from sidecred.webhook.decide import decide_mutation, decide_validation
from sidecred.webhook.mutate import apply_patch
from tests.webhook.fixture_cases import BASE_ROLE_ARN, fixed_tokens, pod_request

KEY = "sidecred.dev/container-roles"
CONFIG = Settings(base_role_arn=BASE_ROLE_ARN)
NAMESPACE = {
    "metadata": {
        "name": "shop",
        "annotations": {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "shop-.*"},
    }
}


def pod(
    container_roles_value: str | None,
    *,
    role: str | None = "shop-app",
    containers: tuple[str, ...] = ("app", "backup", "metrics"),
    **annotations: str,
) -> dict[str, Any]:
    values = dict(annotations)
    if role is not None:
        values["iam.amazonaws.com/role"] = role
    if container_roles_value is not None:
        values[KEY] = container_roles_value
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "annotations": values},
        "spec": {"containers": [{"name": n, "image": f"example/{n}"} for n in containers]},
    }


def mutate(obj: dict[str, Any], config: Settings = CONFIG):
    return decide_mutation(pod_request(obj), NAMESPACE, config, new_token=fixed_tokens())


def env_of(patched: dict[str, Any], name: str) -> dict[str, Any]:
    containers = patched["spec"]["containers"] + patched["spec"].get("initContainers", [])
    container = next(c for c in containers if c["name"] == name)
    return {e["name"]: e.get("value") for e in container.get("env") or []}


BAD_MAPS = [
    ("not-json", "backup=shop-backup", "is not JSON"),
    ("not-an-object", '["backup"]', "is an array, not an object from container name to role"),
    ("a-string", '"shop-backup"', "is a string, not an object"),
    ("null", "null", "is null, not an object"),
    ("number-value", '{"backup": 7}', 'gives container "backup" a number; each value is a role'),
    ("null-value", '{"backup": null}', 'gives container "backup" null'),
    ("object-value", '{"backup": {"role": "x"}}', 'gives container "backup" an object'),
    ("list-value", '{"backup": ["a", "b"]}', 'gives container "backup" an array'),
    ("named-twice", '{"backup": "shop-a", "backup": "shop-b"}', 'names container "backup" twice'),
    (
        "role-twice",
        '{"backup": "shop-backup", "metrics": "arn:aws:iam::111122223333:role/shop-backup"}',
        'gives role "arn:aws:iam::111122223333:role/shop-backup" to both "backup" and "metrics"',
    ),
    ("pod-role-again", '{"backup": "shop-app"}', 'gives container "backup" the pod\'s own role'),
    (
        "more-entries-than-containers",
        '{"app": "", "backup": "shop-b", "metrics": "", "cron": "shop-c"}',
        "has 4 entries, but the pod has only 3 containers",
    ),
    ("unknown-container", '{"backupp": "shop-b"}', 'names "backupp", which is not a container'),
    ("the-sidecar", '{"sidecred": "shop-b"}', 'cannot name the sidecar "sidecred"'),
    ("not-a-name", '{"Backup_1": "shop-b"}', 'names "Backup_1", which is not a container name'),
    ("empty-name", '{"": "shop-b"}', 'names "", which is not a container name'),
    ("bad-role", '{"backup": "shop backup"}', "contains whitespace or control characters"),
    ("bad-arn", '{"backup": "arn:aws:iam::1:role/x"}', "is not an IAM role ARN"),
    ("nothing-to-serve", '{"metrics": ""}', None),  # allowed with a pod role: see below
    ("deeply-nested", "[" * 5000 + "]" * 5000, "is not JSON (nested too deeply)"),
    ("too-long", json.dumps({"backup": "shop-" + "x" * MAX_CHARS}), "the limit is 16384"),
    (
        "too-many",
        json.dumps({f"c{i}": "" for i in range(MAX_ENTRIES + 1)}),
        f"has {MAX_ENTRIES + 1} entries; the limit is {MAX_ENTRIES}",
    ),
]


@pytest.mark.parametrize(
    ("value", "message"), [c[1:] for c in BAD_MAPS], ids=[c[0] for c in BAD_MAPS]
)
def test_a_bad_map_is_a_denial_that_says_what_is_wrong(value: str, message: str | None) -> None:
    decision = mutate(pod(value))
    if message is None:
        assert decision.allowed, decision.message
        return
    assert not decision.allowed
    assert (decision.code, decision.reason) == (403, "bad-annotation")
    assert decision.message.startswith("sidecred: invalid pod annotations: ")
    assert message in decision.message, decision.message
    assert decision.patch is None


def test_a_map_only_pod_must_give_some_container_a_role() -> None:
    decision = mutate(pod('{"metrics": ""}', role=None))
    assert not decision.allowed and decision.reason == "bad-annotation"
    assert "gives no container a role and the pod has no pod-level role" in decision.message


def test_a_skipped_container_cannot_also_have_a_role() -> None:
    skipped = pod('{"backup": "shop-backup"}', **{"sidecred.dev/skip-containers": "backup"})
    decision = mutate(skipped)
    assert not decision.allowed and decision.reason == "bad-annotation"
    assert 'container "backup" is in sidecred.dev/skip-containers' in decision.message
    # A skipped container mapped to "" says the same thing twice, and is fine.
    both = pod('{"backup": ""}', **{"sidecred.dev/skip-containers": "backup"})
    assert mutate(both).allowed


def test_a_container_with_its_own_role_has_a_name_its_token_volume_can_carry() -> None:
    long_name = "b" * (MAX_ROLE_CONTAINER_CHARS + 1)
    decision = mutate(pod(json.dumps({long_name: "shop-backup"}), containers=("app", long_name)))
    assert not decision.allowed and decision.reason == "bad-annotation"
    assert f"may have at most {MAX_ROLE_CONTAINER_CHARS}" in decision.message
    fits = "b" * MAX_ROLE_CONTAINER_CHARS
    decision = mutate(pod(json.dumps({fits: "shop-backup"}), containers=("app", fits)))
    assert decision.allowed, decision.message
    # Mapped to "", a long name needs no volume.
    assert mutate(pod(json.dumps({long_name: ""}), containers=("app", long_name))).allowed


def test_init_and_ephemeral_containers_are_containers_of_the_pod() -> None:
    obj = pod('{"migrate": "shop-migrate", "debugger": ""}', containers=("app",))
    obj["spec"]["initContainers"] = [{"name": "migrate", "image": "m", "restartPolicy": "Always"}]
    obj["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox"}]
    decision = mutate(obj)
    assert decision.allowed, decision.message
    patched = apply_patch(obj, decision.patch or [])
    migrate = env_of(patched, "migrate")
    assert migrate["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith(
        "/v1/containers/migrate/credentials"
    )


def test_each_role_reaches_the_policy_and_a_refusal_names_the_container() -> None:
    decision = mutate(pod('{"backup": "admin"}'))
    assert not decision.allowed and decision.reason == "not-permitted"
    assert decision.message.startswith(
        'sidecred: container "backup" (sidecred.dev/container-roles): role '
        '"arn:aws:iam::111122223333:role/admin" is not permitted in namespace "shop"'
    )
    # The pod's role is checked as before, and first.
    decision = mutate(pod('{"backup": "shop-backup"}', role="admin"))
    assert decision.message.startswith('sidecred: role "arn:aws:iam::111122223333:role/admin"')
    unavailable = decide_mutation(
        pod_request(pod('{"backup": "shop-backup"}', role=None)), None, CONFIG,
        namespace_error="API server unreachable",
    )  # fmt: skip
    assert (unavailable.code, unavailable.reason) == (503, "namespace-unavailable")
    assert 'container "backup"' in unavailable.message


def test_a_valid_map_is_admitted_by_both_webhooks_and_reinvocation_adds_nothing() -> None:
    obj = pod('{"backup": "shop-backup", "metrics": ""}')
    decision = mutate(obj)
    patched = apply_patch(obj, decision.patch or [])
    request = pod_request(patched)
    assert decide_validation(request, NAMESPACE, CONFIG).allowed
    again = decide_mutation(request, NAMESPACE, CONFIG, new_token=lambda: "another")
    assert again.allowed and again.patch is None


def test_token_mode_env_gives_every_role_its_own_token_and_keeps_them_on_reinvocation() -> None:
    obj = pod('{"backup": "shop-backup", "metrics": ""}', **{"sidecred.dev/token-mode": "env"})
    patched = apply_patch(obj, mutate(obj).patch or [])
    app, backup = env_of(patched, "app"), env_of(patched, "backup")
    token, own = (
        app["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
        backup["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
    )
    assert token != own
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in env_of(patched, "metrics")
    sidecar = env_of(patched, "sidecred")
    assert sidecar["SIDECRED_AUTH_TOKEN"] == token
    assert json.loads(sidecar["SIDECRED_CONTAINER_ROLES"])["backup"]["auth_token"] == own
    # A later webhook adds a container: it gets the pod's role; the tokens stay as they are.
    patched["spec"]["containers"].append({"name": "late", "image": "x"})
    again = decide_mutation(pod_request(patched), NAMESPACE, CONFIG, new_token=lambda: "new")
    late = env_of(apply_patch(patched, again.patch or []), "late")
    assert late["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == token


def test_a_sidecar_that_gives_two_roles_one_token_is_not_canonical() -> None:
    obj = pod('{"backup": "shop-backup"}', **{"sidecred.dev/token-mode": "env"})
    patched = apply_patch(obj, mutate(obj).patch or [])
    sidecar = patched["spec"]["initContainers"][0]
    for entry in sidecar["env"]:
        if entry["name"] == "SIDECRED_CONTAINER_ROLES":
            roles = json.loads(entry["value"])
            roles["backup"]["auth_token"] = env_of(patched, "sidecred")["SIDECRED_AUTH_TOKEN"]
            entry["value"] = json.dumps(roles, separators=(",", ":"))
        if entry["name"] == "SIDECRED_AUTH_TOKEN":
            shared = entry["value"]
    for entry in patched["spec"]["containers"][1]["env"]:
        if entry["name"] == "AWS_CONTAINER_AUTHORIZATION_TOKEN":
            entry["value"] = shared
    # Arriving this way at CREATE (a hand-written sidecar), the pod is refused.
    decision = decide_validation(pod_request(patched), NAMESPACE, CONFIG)
    assert not decision.allowed and decision.reason == "forged-sidecar"
    assert "gives two roles the same auth token" in decision.message


def test_foreign_endpoint_is_judged_against_each_containers_own_uri() -> None:
    obj = pod('{"backup": "shop-backup"}')
    obj["spec"]["containers"][1]["env"] = [
        {
            "name": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "value": "http://127.0.0.1:61080/v1/credentials",
        }
    ]
    decision = mutate(obj)
    assert not decision.allowed and decision.reason == "foreign-endpoint"
    assert "/v1/containers/backup/credentials" in decision.message


def test_session_names_are_namespace_pod_container_cut_with_a_hash() -> None:
    assert container_session_name("shop", "web-0", "backup") == "shop.web-0.backup"
    long = container_session_name("shop", "p" * 60, "backup")
    assert len(long) == 64 and long.startswith("shop.ppp") and long[-9] == "-"
    assert long != container_session_name("shop", "p" * 60, "backupx")
    assert session_pod_label({"metadata": {"generateName": "web-5d8f7c9b4-"}}) == "web-5d8f7c9b4"
    # The same label at validation, once the API server has named the pod.
    named = {"metadata": {"generateName": "web-5d8f7c9b4-", "name": "web-5d8f7c9b4-x7k2p"}}
    assert session_pod_label(named) == "web-5d8f7c9b4"
    assert session_pod_label({"metadata": {"name": "web-0"}}) == "web-0"


def test_a_custom_session_name_carries_the_container_too() -> None:
    obj = pod('{"backup": "shop-backup"}', **{"iam.amazonaws.com/session-name": "checkout"})
    patched = apply_patch(obj, mutate(obj).patch or [])
    sidecar = env_of(patched, "sidecred")
    assert sidecar["SIDECRED_SESSION_NAME"] == "shop.checkout"
    roles = json.loads(sidecar["SIDECRED_CONTAINER_ROLES"])
    assert roles["backup"]["session_name"] == "shop.checkout.backup"


def test_roles_by_container_reads_what_each_container_reaches_never_a_token() -> None:
    obj = pod('{"backup": "shop-backup", "metrics": ""}', **{"sidecred.dev/token-mode": "env"})
    patched = apply_patch(obj, mutate(obj).patch or [])
    assert roles_by_container(patched) == {
        "app": BASE_ROLE_ARN + "shop-app",
        "backup": BASE_ROLE_ARN + "shop-backup",
        "metrics": "",
    }
    assert container_roles(patched) == {"backup": BASE_ROLE_ARN + "shop-backup"}
    assert injected_role(patched) == BASE_ROLE_ARN + "shop-app"
    only = pod('{"backup": "shop-backup"}', role=None)
    patched_only = apply_patch(only, mutate(only).patch or [])
    assert injected_role(patched_only) == f"backup={BASE_ROLE_ARN}shop-backup"
    assert "fixed-test-token" not in json.dumps(roles_by_container(patched))


ROLE_POOL = ("", "shop-app", "shop-backup", "shop-report", "admin", BASE_ROLE_ARN + "shop-backup")


@st.composite
def map_pods(draw: st.DrawFn) -> dict[str, Any]:
    """A clean pod whose container map is drawn: names of its own and others, any role."""
    names = draw(st.lists(st.sampled_from(("app", "backup", "report", "cron")), min_size=1, max_size=4, unique=True))  # fmt: skip
    keys = draw(st.lists(st.sampled_from((*names, "ghost")), max_size=4, unique=True))
    value = json.dumps({k: draw(st.sampled_from(ROLE_POOL)) for k in keys})
    extra = {"sidecred.dev/token-mode": draw(st.sampled_from(("file", "env")))}
    role = draw(st.sampled_from((None, "shop-app", "shop-report")))
    obj = pod(value, role=role, containers=tuple(names), **extra)
    if draw(st.booleans()):
        obj["metadata"] = {**obj["metadata"], "name": None, "generateName": "web-5d8f-"}
        del obj["metadata"]["name"]
    return obj


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(map_pods(), st.sampled_from(("native", "container")))
def test_any_map_is_refused_clearly_or_gives_each_container_only_its_own(
    obj: dict[str, Any], mode: str
) -> None:
    config = dataclasses.replace(CONFIG, sidecar_mode=mode)
    decision = mutate(obj, config)
    if not decision.allowed:
        assert decision.reason in ("bad-annotation", "not-permitted"), decision.message
        assert decision.code == 403 and decision.message.startswith("sidecred: ")
        return
    patched = apply_patch(obj, decision.patch or [])
    request = pod_request(patched)
    assert decide_validation(request, NAMESPACE, config).allowed
    assert decide_mutation(request, NAMESPACE, config, new_token=lambda: "x").patch is None
    roles = json.loads(obj["metadata"]["annotations"][KEY])
    pod_role_arn = obj["metadata"]["annotations"].get("iam.amazonaws.com/role")
    reached = roles_by_container(patched)
    tokens = []
    for container in patched["spec"]["containers"]:
        name = container["name"]
        if name == "sidecred":
            continue
        env = env_of(patched, name)
        mounts = {m["name"] for m in container.get("volumeMounts") or []}
        own = roles.get(name)
        if own:
            assert reached[name].endswith("/" + own.rsplit("/", 1)[-1])
            assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith(
                f"/v1/containers/{name}/credentials"
            )
            assert mounts <= {f"sidecred-token-{name}"}
        elif name in roles or pod_role_arn is None:
            assert reached[name] == "" and "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
            assert not mounts
        else:
            assert reached[name] == BASE_ROLE_ARN + pod_role_arn and mounts <= {"sidecred-token"}
        tokens.append(env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"))
    # In token mode env every role's token differs (containers on the pod's role share one).
    distinct = {t for t in tokens if t}
    expected_roles = {reached[n] for n in reached if reached[n]}
    if obj["metadata"]["annotations"]["sidecred.dev/token-mode"] == "env":
        assert len(distinct) == len(expected_roles)
