"""The bypass catalogue: one case per attack on the webhook, each refused or made harmless.

SECURITY.md names the path each case attacks. Attacks on a pod CREATE that are a
pod in, a decision out, live as fixtures (tests/webhook/fixtures, `threat:` key)
and are also sent to the real webhook over TLS; what stays here needs code:
UPDATE sequences, raw JSON tricks, parametrised policy spellings and the HTTP edge.
Pods are built from a permitted baseline (role shop-reader in namespace shop).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from sidecred.pods.pod import find_sidecar, iter_containers
from sidecred.pods.settings import Settings
from sidecred.pods.sidecar_spec import FULL_URI
from sidecred.sidecar import config as sc
from sidecred.webhook.app import create_app
from sidecred.webhook.decide import Decision, decide_mutation, decide_validation
from sidecred.webhook.metrics import WebhookMetrics
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import ReviewError, build_review, parse_review
from tests.hardening.webhook.strategies import BASE_ROLE_ARN, admission_request, review_bytes
from tests.support.static_namespaces import StaticNamespaces

CONFIG = Settings(base_role_arn=BASE_ROLE_ARN)
ASSUME_ROLE = Settings(base_role_arn=BASE_ROLE_ARN, credential_source="assume-role")
BROKER = Settings(
    base_role_arn=BASE_ROLE_ARN,
    credential_source="broker",
    broker_url="https://sidecred-broker.sidecred-system.svc:8444",
    broker_ca="-----BEGIN CERTIFICATE-----\nMIIBbroker\n-----END CERTIFICATE-----\n",
)
ROLE = BASE_ROLE_ARN + "shop-reader"
FORBIDDEN = BASE_ROLE_ARN + "admin"
SHOP = {
    "metadata": {
        "name": "shop",
        "annotations": {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "shop-.*"},
    }
}
OUR_URI = sc.credentials_uri(CONFIG.sidecar_port)


def app_pod(role: str = "shop-reader", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "annotations": {"iam.amazonaws.com/role": role},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec},
    }


def mutate(pod: dict[str, Any], config: Settings = CONFIG, namespace=SHOP) -> Decision:
    return decide_mutation(admission_request(pod), namespace, config, new_token=lambda: "t" * 43)


def validate(request: dict[str, Any], config: Settings = CONFIG) -> Decision:
    return decide_validation(request, SHOP, config)


def injected(pod: dict[str, Any] | None = None, config: Settings = CONFIG) -> dict[str, Any]:
    """A pod as it leaves the mutating webhook."""
    pod = pod or app_pod()
    decision = mutate(pod, config)
    assert decision.allowed and decision.patch, decision.message
    return apply_patch(pod, decision.patch)


def refused(decision: Decision, reason: str, *fragments: str) -> None:
    assert decision.allowed is False, "expected a refusal"
    assert decision.reason == reason, decision.message
    assert decision.patch is None
    for fragment in fragments:
        assert fragment in decision.message, decision.message


def sidecar_of(pod: dict[str, Any]) -> dict[str, Any]:
    found = find_sidecar(pod)
    assert found is not None
    return found[2]


def handwritten_sidecar(role_arn: str, name: str = "sidecred") -> dict[str, Any]:
    return {
        "name": name,
        "image": "ghcr.io/sidecred/sidecred-sidecar:0.1.0",
        "command": ["sidecred", "sidecar"],
        "restartPolicy": "Always",
        "env": [{"name": sc.ENV_ROLE_ARN, "value": role_arn}],
    }


# --- the cases the threat model names ----------------------------------------------


def test_role_annotation_changed_after_admission() -> None:
    old = injected()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"]["iam.amazonaws.com/role"] = "admin"
    request = admission_request(new, operation="UPDATE", old_pod=old)
    refused(validate(request), "role-changed", "cannot change on an existing pod")


def test_credentials_uri_pointing_at_another_pod() -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": FULL_URI, "value": "http://10.0.0.7:61080/v1/credentials"}
    ]
    refused(mutate(pod), "foreign-endpoint", "10.0.0.7")


def test_a_different_partition() -> None:
    refused(
        mutate(app_pod("arn:aws-cn:iam::111122223333:role/shop-reader")),
        "not-permitted",
        "arn:aws-cn:",
    )


@pytest.mark.parametrize(
    "policy", ["shop-.*", BASE_ROLE_ARN + "shop-.*", ".*:role/shop-.*"], ids=str
)
def test_namespace_regex_without_anchors_is_matched_whole(policy: str) -> None:
    namespace = {
        "metadata": {"name": "shop", "annotations": {"iam.amazonaws.com/permitted": policy}}
    }
    refused(mutate(app_pod("evil-shop-x"), namespace=namespace), "not-permitted", "evil-shop-x")
    refused(mutate(app_pod("x/shop-reader"), namespace=namespace), "not-permitted")


def test_regex_written_with_a_path_safe_class_does_not_cross_a_slash() -> None:
    # `.*` crosses "/" (so `shop-.*` also permits `shop-x/admin`, a role named "admin"
    # with a path); SECURITY.md tells policy authors to use `[^/]*` for names.
    namespace = {
        "metadata": {
            "name": "shop",
            "annotations": {"iam.amazonaws.com/permitted": BASE_ROLE_ARN + "shop-[^/]*"},
        }
    }
    assert mutate(app_pod("shop-reader"), namespace=namespace).allowed
    refused(mutate(app_pod("shop-x/admin"), namespace=namespace), "not-permitted")


def test_glob_does_not_cross_a_slash_in_role_paths() -> None:
    namespace = {
        "metadata": {
            "name": "shop",
            "annotations": {"iam.amazonaws.com/allowed-roles": '["shop-*", "team/*"]'},
        }
    }
    assert mutate(app_pod("team/reader"), namespace=namespace).allowed
    refused(mutate(app_pod("shop-x/admin"), namespace=namespace), "not-permitted")
    refused(mutate(app_pod("team/ops/admin"), namespace=namespace), "not-permitted")


@pytest.mark.parametrize(
    ("role", "reason"),
    [
        ("arn:aws:iam::111122223333:Role/shop-reader", "bad-annotation"),
        ("ARN:aws:iam::111122223333:role/shop-reader", "bad-annotation"),
        ("arn:AWS:iam::111122223333:role/shop-reader", "bad-annotation"),
        (BASE_ROLE_ARN + "SHOP-READER", "not-permitted"),
        ("Shop-Reader", "not-permitted"),
    ],
    ids=["Role/", "ARN:", "AWS partition", "upper-case ARN name", "mixed-case name"],
)
def test_case_tricks(role: str, reason: str) -> None:
    # The policy is matched case-sensitively; IAM role names are unique regardless of case,
    # so a case variant can only name the same role, and it is refused unless the policy
    # itself allows that spelling.
    refused(mutate(app_pod(role)), reason)


def test_duplicated_annotation_key_in_raw_json() -> None:
    body = review_bytes(admission_request(app_pod())).replace(
        b'"iam.amazonaws.com/role": "shop-reader"',
        b'"iam.amazonaws.com/role": "shop-reader", "iam.amazonaws.com/role": "admin"',
    )
    assert body.count(b'"iam.amazonaws.com/role"') == 2
    with pytest.raises(ReviewError) as caught:
        parse_review(body)
    assert caught.value.status_code == 400
    assert 'duplicate key "iam.amazonaws.com/role"' in caught.value.message


def test_update_swaps_the_sidecar_image() -> None:
    old = injected()
    new = copy.deepcopy(old)
    sidecar_of(new)["image"] = "evil.example/sidecred:latest"
    request = admission_request(new, operation="UPDATE", old_pod=old)
    refused(validate(request), "image-changed", "evil.example")


def test_ephemeral_debug_container_targeting_the_sidecar() -> None:
    old = injected()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [
        {"name": "debugger-abc", "image": "busybox", "targetContainerName": "sidecred"}
    ]
    request = admission_request(
        new, operation="UPDATE", old_pod=old, sub_resource="ephemeralcontainers"
    )
    refused(validate(request), "debug-target", "kubectl debug --target=<app container>")


@pytest.mark.parametrize(
    ("flag", "why"),
    [
        ("shareProcessNamespace", "/proc/<pid>/root"),
        ("hostPID", "/proc/<pid>/root"),
        ("hostIPC", "IPC namespace"),
    ],
)
@pytest.mark.parametrize("config", [CONFIG, ASSUME_ROLE, BROKER], ids=lambda c: c.credential_source)
def test_shared_kernel_view_in_every_source(flag: str, why: str, config: Settings) -> None:
    # Fixed: in web-identity and broker only a warning, though any container of the
    # sidecar's UID (or root) read its sidecred-audience token through /proc/<pid>/root.
    refused(mutate(app_pod(**{flag: True}), config), "shared-kernel-view", flag, why)


def test_kubectl_debug_copy_is_told_how_to_keep_processes_apart() -> None:
    # kubectl debug --copy-to shares the copy's processes unless told otherwise.
    refused(
        mutate(app_pod(shareProcessNamespace=True)), "shared-kernel-view", "--share-processes=false"
    )


# --- further attacks ---------------------------------------------------------------


def test_skip_containers_naming_the_sidecar() -> None:
    pod = app_pod()
    pod["metadata"]["annotations"]["sidecred.dev/skip-containers"] = "app,sidecred"
    refused(mutate(pod), "bad-annotation", "cannot name the sidecar")


@pytest.mark.parametrize("mode", ["none", "FILE", "env ", ""])
def test_token_mode_annotation_with_an_invalid_value(mode: str) -> None:
    pod = app_pod()
    pod["metadata"]["annotations"]["sidecred.dev/token-mode"] = mode
    refused(mutate(pod), "bad-annotation", "sidecred.dev/token-mode")


def test_env_name_case_trick_is_harmless() -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": FULL_URI.lower(), "value": "http://10.0.0.7/v1/credentials"}
    ]
    env = injected(pod)["spec"]["containers"][0]["env"]
    # Env names are case-sensitive and SDKs read only the upper-case name, which is ours.
    assert {"name": FULL_URI, "value": OUR_URI} in env


def test_envfrom_pointing_the_credentials_uri_elsewhere_is_overridden() -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "points-elsewhere"}}]
    env = injected(pod)["spec"]["containers"][0]["env"]
    # An explicit env entry outranks envFrom in the kubelet, so ours wins.
    assert {"name": FULL_URI, "value": OUR_URI} in env


def test_credentials_uri_from_value_from_is_refused() -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": FULL_URI, "valueFrom": {"configMapKeyRef": {"name": "x", "key": "uri"}}}
    ]
    refused(mutate(pod), "foreign-endpoint")


def test_duplicate_credentials_uri_env_last_one_elsewhere() -> None:
    # Fixed: as above, the kubelet's last entry is the one checked.
    pod = app_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": FULL_URI, "value": OUR_URI},
        {"name": FULL_URI, "value": "http://10.0.0.7:61080/v1/credentials"},
    ]
    refused(mutate(pod), "foreign-endpoint", "10.0.0.7")


def test_shared_kernel_view_set_by_a_later_webhook_is_refused_by_validate() -> None:
    pod = injected()
    pod["spec"]["hostPID"] = True
    refused(validate(admission_request(pod)), "shared-kernel-view", "hostPID")


def test_unannotated_pod_without_the_sidecar_may_share_processes() -> None:
    pod = app_pod(shareProcessNamespace=True, hostIPC=True)
    del pod["metadata"]["annotations"]
    assert mutate(pod).reason == "no-role"
    assert validate(admission_request(pod)).allowed


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/var",
        "/var/lib/",
        "//var//lib//kubelet",
        "/var/lib/kubelet/pods",
        "/var/lib/kubelet/pods/0b7c/volumes",
        "/var/log/../lib/kubelet/./pods/",
        "/var/lib/kubelet/pki",
        "/run",
        "/run/containerd/containerd.sock",
        "/var/run/docker.sock",
        "/var/run/crio/crio.sock",
        "/run/k3s/containerd/containerd.sock",
        "/var/run/dockershim.sock",
        "/proc",
        "/proc/1/root",
        "/proc/1/root/var/lib/kubelet",
        "/etc",
        "/etc/kubernetes/kubelet.conf",
    ],
)
def test_host_path_over_the_kubelet_or_the_runtime(path: str) -> None:
    pod = app_pod(volumes=[{"name": "node", "hostPath": {"path": path}}])
    refused(mutate(pod), "node-access", 'volume "node"')
    refused(mutate(pod, BROKER), "node-access", 'volume "node"')


@pytest.mark.parametrize(
    "path",
    [
        "/var/log",
        "/var/lib/docker/containers",
        "/var/lib/kubeletx",
        "/run/log/journal",
        "/etc/machine-id",
        "/etc/kubernetes-audit",
        "/procfs",
    ],
)
def test_host_paths_that_show_no_pod_volumes_stay_allowed(path: str) -> None:
    assert mutate(app_pod(volumes=[{"name": "h", "hostPath": {"path": path}}])).allowed


@pytest.mark.parametrize(
    "context",
    [
        {"privileged": True},
        {"capabilities": {"add": ["SYS_ADMIN"]}},
        {"capabilities": {"add": ["cap_dac_read_search"]}},
        {"capabilities": {"add": [" Sys_Module "]}},
        {"capabilities": {"add": ["SYS_RAWIO"]}},
        {"capabilities": {"add": ["BPF"]}},
        {"capabilities": {"add": ["PERFMON"]}},
        {"capabilities": {"add": ["all"]}},
    ],
)
@pytest.mark.parametrize("where", ["containers", "initContainers"])
def test_container_that_could_reach_the_node(context: dict[str, Any], where: str) -> None:
    pod = app_pod()
    pod["spec"][where] = [{"name": "x", "image": "busybox", "securityContext": context}]
    if where == "initContainers":
        pod["spec"]["containers"] = [{"name": "app", "image": "app:1"}]
    refused(mutate(pod), "node-access", '"x"')


@pytest.mark.parametrize("capability", ["NET_ADMIN", "NET_RAW", "SYS_PTRACE", "CHOWN"])
def test_capabilities_that_do_not_reach_the_sidecar_stay_allowed(capability: str) -> None:
    # istio-init adds NET_ADMIN and NET_RAW; without a shared process namespace
    # (refused) SYS_PTRACE sees no process of the sidecar's.
    pod = app_pod()
    pod["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": [capability]}}
    assert mutate(pod).allowed


def _debug(old: dict[str, Any], **fields: Any) -> Decision:
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger-x", "image": "busybox", **fields}]
    request = admission_request(
        new, operation="UPDATE", old_pod=old, sub_resource="ephemeralcontainers"
    )
    return validate(request)


@pytest.mark.parametrize(
    "context",
    [{"privileged": True}, {"capabilities": {"add": ["SYS_ADMIN"]}}],
)
def test_ephemeral_container_that_could_reach_the_node(context: dict[str, Any]) -> None:
    # kubectl debug --profile=sysadmin makes a privileged ephemeral container.
    decision = _debug(injected(), targetContainerName="app", securityContext=context)
    refused(decision, "node-access", '"debugger-x"', "--profile=general")


@pytest.mark.parametrize(
    "capabilities", [["SYS_PTRACE"], ["NET_ADMIN", "NET_RAW"]], ids=["general", "netadmin"]
)
def test_ephemeral_containers_of_the_ordinary_debug_profiles_stay_allowed(
    capabilities: list[str],
) -> None:
    context = {"capabilities": {"add": capabilities}}
    assert _debug(injected(), targetContainerName="app", securityContext=context).allowed


def test_ephemeral_container_in_an_admitted_shared_process_pod() -> None:
    old = injected()
    old["spec"]["shareProcessNamespace"] = True  # admitted before this was refused
    refused(_debug(old), "shared-kernel-view", "shareProcessNamespace")


def test_ephemeral_container_mounting_an_admitted_kubelet_host_path() -> None:
    old = injected()
    old["spec"]["volumes"].append({"name": "k", "hostPath": {"path": "/var/lib/kubelet/"}})
    refused(
        _debug(old, volumeMounts=[{"name": "k", "mountPath": "/k"}]),
        "node-access",
        '"/var/lib/kubelet/"',
    )
    assert _debug(old, targetContainerName="app").allowed  # not mounted: it sees nothing


def test_ephemeral_containers_of_pods_without_the_sidecar_are_not_judged() -> None:
    pod = app_pod(shareProcessNamespace=True)
    del pod["metadata"]["annotations"]
    assert _debug(pod, securityContext={"privileged": True}).allowed


def test_object_namespace_differs_from_the_request_namespace() -> None:
    # Fixed: the policy was read for the object's namespace even when the request (the one
    # RBAC authorised) named another. The API server never sends this; a forger might.
    pod = app_pod()
    pod["metadata"]["namespace"] = "platform"
    request = admission_request(pod)
    assert request["namespace"] == "shop"
    refused(decide_mutation(request, SHOP, CONFIG), "bad-request", '"platform"')
    refused(validate(request), "bad-request", '"platform"')


def test_second_sidecar_image_swapped_on_update() -> None:
    # Fixed: only the container named sidecred had its image pinned on UPDATE. A pod
    # admitted before CREATE refused second sidecars may still run one ("creds").
    old = injected()
    old["spec"]["containers"].append(handwritten_sidecar(ROLE, name="creds"))
    new = copy.deepcopy(old)
    next(c for _, _, c in iter_containers(new) if c["name"] == "creds")["image"] = "evil:1"
    request = admission_request(new, operation="UPDATE", old_pod=old)
    refused(validate(request), "image-changed", '"creds"')


def test_role_annotation_added_on_update() -> None:
    old = app_pod()
    del old["metadata"]["annotations"]["iam.amazonaws.com/role"]
    request = admission_request(app_pod(), operation="UPDATE", old_pod=old)
    refused(validate(request), "role-changed", "was unset")


def test_injected_annotation_removed_on_update() -> None:
    old = injected()
    new = copy.deepcopy(old)
    del new["metadata"]["annotations"]["sidecred.dev/injected"]
    refused(
        validate(admission_request(new, operation="UPDATE", old_pod=old)),
        "role-changed",
        "sidecred.dev/injected",
    )


def test_ephemeral_container_mounting_the_service_account_token() -> None:
    old = injected()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [
        {
            "name": "debugger-abc",
            "image": "busybox",
            "volumeMounts": [{"name": "sidecred-sa-token", "mountPath": "/t"}],
        }
    ]
    request = admission_request(
        new, operation="UPDATE", old_pod=old, sub_resource="ephemeralcontainers"
    )
    refused(validate(request), "debug-target", "sidecred-sa-token")


def test_other_volume_mounted_over_the_token_directory() -> None:
    pod = app_pod(volumes=[{"name": "mine", "emptyDir": {}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "mine", "mountPath": "/var/run/sidecred/"}
    ]
    refused(mutate(pod), "mount-conflict", "/var/run/sidecred")


@pytest.mark.parametrize(
    ("field", "value"),
    [("env", [{"name": FULL_URI, "value": 5}]), ("volumeMounts", [{"name": "x", "mountPath": 5}])],
)
def test_wrongly_typed_fields_are_a_clear_400(field: str, value: Any) -> None:
    # Fixed: these crashed the decision (TypeError/AttributeError, an internal-error denial).
    pod = app_pod()
    pod["spec"]["containers"][0][field] = value
    refused(mutate(pod), "bad-request", f"spec.containers[app].{field}[", "must be a string")


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(create_app(CONFIG, StaticNamespaces(SHOP), WebhookMetrics()))


def test_lone_surrogate_uid_is_a_400_not_a_500(http: TestClient) -> None:
    # Fixed: the uid is echoed, and a lone surrogate cannot be encoded as UTF-8, so
    # rendering the answer raised and the app answered 500.
    body = review_bytes(admission_request(app_pod(), uid="\ud800"))
    response = http.post("/mutate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "surrogates not allowed" in response.json()["error"]


def test_duplicate_keys_over_http_are_a_400(http: TestClient) -> None:
    body = (
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
        ).encode()[:-1]
        + b', "kind": "AdmissionReview"}'
    )
    response = http.post("/validate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert 'duplicate key "kind"' in response.json()["error"]


def test_malformed_projected_volumes_are_a_400_naming_each_field() -> None:
    # The API server never sends these (it decodes into Go types); anyone reaching the
    # webhook can. Once they were read leniently; now every wrong type is named.
    pod = app_pod(
        volumes=[
            {"name": "odd", "projected": "not an object"},
            {"name": "odder", "projected": {"sources": 7}},
            {"name": "mine", "projected": {"sources": ["x", {"serviceAccountToken": "y"}]}},
        ]
    )
    del pod["metadata"]["annotations"]["iam.amazonaws.com/role"]
    for decision in (mutate(pod), validate(admission_request(pod))):
        refused(
            decision,
            "bad-request",
            "spec.volumes[odd].projected must be an object, got str 'not an object'",
            "spec.volumes[odder].projected.sources must be a list, got int 7",
            "spec.volumes[mine].projected.sources[0] must be an object",
            "spec.volumes[mine].projected.sources[1].serviceAccountToken must be an object",
        )
        assert decision.code == 400


def test_a_skip_list_longer_than_a_pod_can_be_is_refused_unread() -> None:
    """Each skip-list name costs a problem or a warning: 100,000 of them made a denial
    of megabytes from a review of half a megabyte."""
    pod = app_pod()
    names = ",".join(f"c{index}" for index in range(100_000))
    pod["metadata"]["annotations"]["sidecred.dev/skip-containers"] = names
    decision = mutate(pod)
    refused(decision, "bad-annotation", "lists more than 250 names")
    assert len(decision.message) < 500
    pod["metadata"]["annotations"]["sidecred.dev/skip-containers"] = ",".join(
        f"c{index}" for index in range(250)
    )
    decision = mutate(pod)  # 250 names the pod does not have: a warning each, 16 answered
    assert decision.allowed and len(decision.warnings) == 250
    answer = build_review("uid", decision)["response"]
    assert len(answer["warnings"]) == 16
    assert answer["warnings"][-1] == "sidecred: and 235 more warnings"
