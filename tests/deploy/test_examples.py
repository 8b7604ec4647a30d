"""deploy/examples: valid Kubernetes objects and IAM trust policies that say what they should."""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python
import pytest
import yaml

from deploy import render
from sidecred.pods.settings import Settings
from sidecred.webhook.namespace_review import review_namespace
from tests.deploy.chart_support import CUSTOM_KINDS, validate_strict

EXAMPLES = render.DEPLOY_DIR / "examples"
MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))
ACCOUNT = "111122223333"
ROLE_KEY = "iam.amazonaws.com/role"


def _objects(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(path: Path) -> dict:
    (obj,) = _objects(path)
    return obj


def _pod_metadata(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"] if obj["kind"] == "Deployment" else obj["metadata"]


def test_the_expected_examples_exist() -> None:
    names = {p.name for p in EXAMPLES.iterdir()}
    assert {
        "namespace-shop.yaml",
        "namespace-team.yaml",
        "pod-shop-reader.yaml",
        "pod-allowed.yaml",
        "pod-app-and-backup.yaml",
        "pod-denied.yaml",
        "trust-policy-web-identity.json",
        "trust-policy-assume-role.json",
    } <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_example_manifests_are_valid_kubernetes_objects(path: Path) -> None:
    objects = _objects(path)
    assert objects
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:  # cert-manager's: no schema shipped
            validate_strict(obj)


def test_namespace_policies_parse_and_use_the_example_account() -> None:
    shop = _one(EXAMPLES / "namespace-shop.yaml")["metadata"]["annotations"]
    pattern = re.compile(shop["iam.amazonaws.com/permitted"])
    assert pattern.fullmatch(f"arn:aws:iam::{ACCOUNT}:role/shop-reader")
    assert not pattern.fullmatch(f"arn:aws:iam::{ACCOUNT}:role/admin")
    team = _one(EXAMPLES / "namespace-team.yaml")["metadata"]["annotations"]
    allowed = json.loads(team["iam.amazonaws.com/allowed-roles"])
    assert isinstance(allowed, list) and allowed and all(isinstance(r, str) for r in allowed)


def test_allowed_and_denied_pods_ask_for_roles_on_either_side_of_the_shop_policy() -> None:
    shop = _one(EXAMPLES / "namespace-shop.yaml")
    pattern = re.compile(shop["metadata"]["annotations"]["iam.amazonaws.com/permitted"])
    reader = next(
        o for o in _objects(EXAMPLES / "pod-shop-reader.yaml") if o["kind"] == "Deployment"
    )
    for path, obj, permitted in [
        ("pod-allowed", _one(EXAMPLES / "pod-allowed.yaml"), True),
        ("pod-shop-reader", reader, True),
        ("pod-denied", _one(EXAMPLES / "pod-denied.yaml"), False),
    ]:
        assert obj["metadata"]["namespace"] == shop["metadata"]["name"], path
        role = _pod_metadata(obj)["annotations"][ROLE_KEY]
        assert role.startswith(f"arn:aws:iam::{ACCOUNT}:role/"), path
        assert bool(pattern.fullmatch(role)) is permitted, path
    assert _one(EXAMPLES / "pod-allowed.yaml")["kind"] == "Pod"  # the demo reads a bare pod
    # The demo's pod with a role per container: every role it names is permitted too.
    roles_pod = _one(EXAMPLES / "pod-app-and-backup.yaml")
    annotations = roles_pod["metadata"]["annotations"]
    own = json.loads(annotations["sidecred.dev/container-roles"])
    assert own == {"backup": f"arn:aws:iam::{ACCOUNT}:role/shop-backup", "metrics": ""}
    for role in (annotations[ROLE_KEY], own["backup"]):
        assert pattern.fullmatch(role), role


def render_values_audience() -> str:
    """The chart's default token audience: the trust policy must require exactly it."""
    return yaml.safe_load((render.CHART_DIR / "values.yaml").read_text())["tokenAudience"]


def test_web_identity_trust_policy_binds_one_service_account_and_the_sidecred_audience() -> None:
    policy = json.loads((EXAMPLES / "trust-policy-web-identity.json").read_text())
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    provider_arn = statement["Principal"]["Federated"]
    assert provider_arn.startswith(f"arn:aws:iam::{ACCOUNT}:oidc-provider/")
    issuer = provider_arn.split(":oidc-provider/", 1)[1]
    conditions = statement["Condition"]["StringEquals"]
    assert conditions == {
        f"{issuer}:sub": "system:serviceaccount:shop:shop-reader",
        f"{issuer}:aud": render_values_audience(),
    }
    # The service account the policy names is the one the example Deployment runs as.
    reader = next(
        o for o in _objects(EXAMPLES / "pod-shop-reader.yaml") if o["kind"] == "Deployment"
    )
    assert reader["spec"]["template"]["spec"]["serviceAccountName"] == "shop-reader"


def test_assume_role_trust_policy_trusts_the_base_role_with_external_id_tags_and_source_identity() -> (
    None
):
    policy = json.loads((EXAMPLES / "trust-policy-assume-role.json").read_text())
    base_role = f"arn:aws:iam::{ACCOUNT}:role/sidecred-base"
    statements = policy["Statement"]
    assert all(s["Effect"] == "Allow" and s["Principal"] == {"AWS": base_role} for s in statements)
    assume = next(s for s in statements if s["Action"] == "sts:AssumeRole")
    assert assume["Condition"]["StringEquals"]["sts:ExternalId"]
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"} <= actions
    tagging = next(s for s in statements if "sts:TagSession" in s["Action"])
    # The session tags the sidecar sets (EKS Pod Identity's names) are allowed, and only they.
    assert set(tagging["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]) == {
        "kubernetes-namespace",
        "kubernetes-pod-name",
        "kubernetes-pod-uid",
        "kubernetes-service-account",
    }


# --- the policies operators copy -------------------------------------------------------

BASE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/"
DOCS = [
    render.DEPLOY_DIR.parent / "README.md",
    render.DEPLOY_DIR / "README.md",
    render.CHART_DIR / "README.md",
]
_SHOWN_POLICY = re.compile(
    r"(iam\.amazonaws\.com/(?:permitted|allowed-roles))[=:] ?"
    r"(?:(\[[^\]]*\])|'([^']+)'|\"([^\"]+)\"|([^`'\"\s]+))"
)


def _review(key: str, value: str, name: str = "shop") -> tuple[bool, tuple[str, ...], str]:
    namespace = {"metadata": {"name": name, "annotations": {key: value}}}
    verdict = review_namespace(namespace, None, Settings(base_role_arn=BASE_ROLE_ARN))
    return verdict.allowed, verdict.warnings, verdict.message


def _notes(values: dict) -> str:
    with helm_python.Chart.load(render.CHART_DIR) as chart:
        rendered = chart.render(values, name="sidecred", namespace="sidecred", is_install=True)
    return rendered["sidecred/templates/NOTES.txt"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("namespace-*.yaml")), ids=lambda p: p.stem)
def test_example_namespace_policies_draw_no_warning(path: Path) -> None:
    """The webhook warns about a policy that permits more than it seems (`shop-.*` also
    permits role/shop-x/admin): the examples people copy must not be such a policy."""
    obj = _one(path)
    annotations = obj["metadata"]["annotations"]
    for key in ("iam.amazonaws.com/permitted", "iam.amazonaws.com/allowed-roles"):
        if key in annotations:
            assert _review(key, annotations[key], obj["metadata"]["name"])[:2] == (True, ())


def test_shop_policy_permits_its_roles_and_none_in_a_deeper_path() -> None:
    shop = _one(EXAMPLES / "namespace-shop.yaml")["metadata"]["annotations"]
    pattern = re.compile(shop["iam.amazonaws.com/permitted"])
    assert pattern.fullmatch(f"{BASE_ROLE_ARN}shop-reader")
    assert pattern.fullmatch(f"{BASE_ROLE_ARN}shop-writer")
    assert not pattern.fullmatch(f"{BASE_ROLE_ARN}shop-x/admin")


@pytest.mark.parametrize("base_role_arn", ["", BASE_ROLE_ARN], ids=["arns", "base-role-arn"])
def test_notes_suggest_a_policy_that_draws_no_warning(base_role_arn: str) -> None:
    notes = _notes({"baseRoleArn": base_role_arn})
    shown = [m for m in _SHOWN_POLICY.finditer(notes)]
    assert len(shown) == 1
    key, *value = shown[0].groups()
    assert _review(key, next(v for v in value if v))[:2] == (True, ())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(render.DEPLOY_DIR.parent)))
def test_policies_in_the_guides_draw_no_warning_unless_shown_refused(doc: Path) -> None:
    """A policy a guide shows is either clean, or shown with the very refusal it gets."""
    text = doc.read_text()
    for match in _SHOWN_POLICY.finditer(text):
        key, *value = match.groups()
        shown = next(v for v in value if v).replace('\\"', '"')  # also inside JSON output
        allowed, warnings, message = _review(key, shown)
        if allowed:
            assert warnings == (), (doc.name, match.group(0), warnings)
        else:
            assert message in text, (doc.name, match.group(0), message)
