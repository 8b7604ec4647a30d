"""Every command of deploy/README.md and certs/README.md, run as written, in order.

What needs no cluster runs for real (`sidecred certs`, Helm's engine rendering the
chart with the guide's flags, kubectl building each Secret). What needs a cluster or
the network is logged and must be a command the tests know cannot run here. Then:
every served certificate verifies against every caBundle in force around it (no
window of failed admissions during a renewal or a CA rotation), every Secret keeps
`ca.crt`, every command names its namespace, and the upgrade from chart 0.1.0 works
as the guide says against 0.1.0's values.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from cryptography import x509

from deploy import render
from sidecred.certs.generate import issued_by
from tests.deploy.chart_support import CUSTOM_KINDS, find, validate_strict
from tests.deploy.guide_shell import Block, GuideShell, sh_blocks

DEPLOY_GUIDE = render.DEPLOY_DIR / "README.md"
CERTS_GUIDE = render.DEPLOY_DIR.parent / "certs" / "README.md"
FIXTURES = Path(__file__).parent / "fixtures"
# Placeholders the guides ask the operator to fill in.
SUBSTITUTIONS = {
    r"\bDIR\b": "./sidecred-tls",
    r"<digest printed above>": "5e" * 32,
}
# Commands that need a cluster, a registry or AWS: logged, never faked.
NEEDS_CLUSTER = {
    ("kubectl", v)
    for v in ("label", "annotate", "get", "logs", "rollout", "delete", "apply", "create", "run")
} | {("helm", v) for v in ("test", "history", "rollback", "uninstall", "get")}
OUTSIDE = {"aws", "skopeo", "docker"}
# chart 0.1.0 values as an operator set them: none renamed by 0.2.0, then some.
OLD_KEPT = {"baseRoleArn": "arn:aws:iam::111122223333:role/", "region": "eu-west-1", "replicas": 3}
OLD_RENAMED = {
    **OLD_KEPT,
    "sidecarImage": "registry.corp/platform/sidecred:0.1.0",
    "sidecarMode": "container",
    "tokenMode": "env",
    "sidecarPort": 61090,
    "healthPort": 61091,
    "namespace": {"create": False},
}


def _installs(block: Block) -> bool:
    return bool(re.search(r"^helm install ", block.text, re.M))


def _run_guide(shell: GuideShell, blocks: list[Block]) -> None:
    """Run blocks in order; the guide's alternative installs each start from nothing."""
    for block in blocks:
        if _installs(block):
            shutil.rmtree(shell.state / "releases", ignore_errors=True)
        if "helm get values" in block.text:
            shell.preload_release("sidecred", "sidecred", OLD_KEPT)
        if "-f values-0.2.0.yaml" in block.text:
            old = yaml.safe_load((shell.cwd / "values-0.1.0.yaml").read_text())
            shell.write("values-0.2.0.yaml", yaml.safe_dump(_translate(old)))
        shell.run_ok(block)


def _shell(root: Path) -> GuideShell:
    shell = GuideShell(root, SUBSTITUTIONS)
    shell.env["TOKEN"] = "registry-token"
    shell.write("broker-credentials", "[default]\naws_access_key_id = AKIAEXAMPLE\n")
    return shell


@pytest.fixture(scope="module")
def deploy_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuideShell]:
    shell = _shell(tmp_path_factory.mktemp("deploy-guide"))
    _run_guide(shell, sh_blocks(DEPLOY_GUIDE))
    yield shell


@pytest.fixture(scope="module")
def rotation_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuideShell]:
    """The install without cert-manager, then certs/README.md from top to bottom."""
    shell = _shell(tmp_path_factory.mktemp("certs-guide"))
    (install,) = [b for b in sh_blocks(DEPLOY_GUIDE) if "tls.certManager.enabled=false" in b.text]
    _run_guide(shell, [install, *sh_blocks(CERTS_GUIDE)])
    yield shell


# --- what ran, and what could not ---------------------------------------------------


@pytest.mark.parametrize("run", ["deploy_run", "rotation_run"])
def test_every_command_runs_or_needs_a_cluster(run: str, request: pytest.FixtureRequest) -> None:
    shell: GuideShell = request.getfixturevalue(run)
    log = shell.log()
    assert log
    for entry in log:
        program = entry["program"]
        if program in ("helm-release", "applied") or program in OUTSIDE:
            continue
        verb = entry.get("verb")
        if (program, verb) in {("helm", "install"), ("helm", "upgrade")}:
            continue  # rendered by Helm's engine; a failure would have failed the block
        if verb == "create secret":
            assert entry["returncode"] == 0
            continue
        assert (program, verb) in NEEDS_CLUSTER, f"a command this test cannot judge: {entry}"


def test_the_guide_renders_every_release_it_installs(deploy_run: GuideShell) -> None:
    releases = [e["release"] for e in deploy_run.log() if e["program"] == "helm-release"]
    sets = {repr(sorted(r["values"].items())) for r in releases}
    assert len(sets) >= 6, "the guide installs and upgrades with several value sets"
    for release in releases:
        for obj in release["objects"]:
            if obj["kind"] not in CUSTOM_KINDS:
                validate_strict(obj)


@pytest.mark.parametrize("run", ["deploy_run", "rotation_run"])
def test_every_command_names_its_namespace(run: str, request: pytest.FixtureRequest) -> None:
    """A helm or kubectl command without one acts on the kubeconfig's namespace."""
    for entry in request.getfixturevalue(run).log():
        if entry["program"] == "helm":
            assert entry["namespace"] == "sidecred", entry["argv"]
        elif entry["program"] == "kubectl" and entry["verb"] == "create secret":
            assert "-n" in entry["argv"] or "--namespace" in entry["argv"], entry["argv"]


def test_no_guide_uses_force_or_plain_reuse_values() -> None:
    for guide in (DEPLOY_GUIDE, CERTS_GUIDE):
        commands = "\n".join(b.text for b in sh_blocks(guide))
        assert "--force" not in commands, guide
        assert re.search(r"(?<!then-)--reuse-values", commands) is None, guide


# --- certificates ---------------------------------------------------------------------


def _secrets(shell: GuideShell) -> list[dict[str, Any]]:
    return [
        e["object"]
        for e in shell.log()
        if e["program"] == "applied" and e["object"]["kind"] == "Secret"
    ]


def _certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _data(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


@pytest.mark.parametrize("run", ["deploy_run", "rotation_run"])
def test_every_serving_secret_keeps_its_ca(run: str, request: pytest.FixtureRequest) -> None:
    """The ServiceMonitor (and, with the broker, the sidecars) verify with `ca.crt`."""
    serving = [
        s for s in _secrets(request.getfixturevalue(run)) if s["metadata"]["name"].endswith("-tls")
    ]
    assert serving
    for secret in serving:
        assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"]), secret["metadata"]
        (leaf,) = _certificates(_data(secret, "tls.crt"))
        assert any(issued_by(leaf, ca) for ca in _certificates(_data(secret, "ca.crt")))
        assert secret["metadata"]["namespace"] == "sidecred"


def _timeline(shell: GuideShell) -> list[tuple[list[x509.Certificate], x509.Certificate]]:
    """(the caBundle the API server holds, the certificate the webhook serves) after
    each command that changes one of them, for the release without cert-manager."""
    bundle: list[x509.Certificate] | None = None
    served: x509.Certificate | None = None
    states = []
    for entry in shell.log():
        if entry["program"] == "helm-release" and entry["name"] == "sidecred":
            objects = entry["release"]["objects"]
            hooks = find(objects, "ValidatingWebhookConfiguration")["webhooks"]
            given = {h["clientConfig"].get("caBundle") for h in hooks}
            (value,) = given
            bundle = _certificates(base64.b64decode(value)) if value else None
        elif (
            entry["program"] == "applied" and entry["object"]["metadata"]["name"] == "sidecred-tls"
        ):
            (served,) = _certificates(_data(entry["object"], "tls.crt"))
        else:
            continue
        if bundle is not None and served is not None:
            states.append((bundle, served))
    return states


def _gaps(states: list[tuple[list[x509.Certificate], x509.Certificate]]) -> list[int]:
    """Steps after which a certificate the webhook may serve does not verify against a
    bundle the API server may hold (either may lag one step behind)."""
    gaps = []
    for i, (bundle, served) in enumerate(states):
        before = states[max(i - 1, 0)]
        pairs = [(bundle, served), (before[0], served), (bundle, before[1])]
        if not all(any(issued_by(cert, ca) for ca in cas) for cas, cert in pairs):
            gaps.append(i)
    return gaps


@pytest.mark.parametrize("run", ["deploy_run", "rotation_run"])
def test_renewal_and_rotation_leave_no_window(run: str, request: pytest.FixtureRequest) -> None:
    states = _timeline(request.getfixturevalue(run))
    assert len(states) >= 2
    assert _gaps(states) == []


def test_the_rotation_really_replaces_the_ca(rotation_run: GuideShell) -> None:
    states = _timeline(rotation_run)
    first_bundle, _ = states[0]
    last_bundle, last_served = states[-1]
    assert len(first_bundle) == 1 and len(last_bundle) == 1
    assert first_bundle[0] != last_bundle[0]
    assert not issued_by(last_served, first_bundle[0])
    assert max(len(bundle) for bundle, _ in states) == 2


def test_a_rotation_with_force_is_caught(tmp_path: Path) -> None:
    """The check above can fail: `--force`, which the guides once used, makes a gap."""
    shell = _shell(tmp_path)
    (install,) = [b for b in sh_blocks(DEPLOY_GUIDE) if "tls.certManager.enabled=false" in b.text]
    forced = Block(
        "force",
        "sidecred certs --service sidecred --namespace sidecred --out ./sidecred-tls --force"
        " > ca-bundle.b64\n"
        "kubectl -n sidecred create secret generic sidecred-tls --type=kubernetes.io/tls"
        " --from-file=./sidecred-tls/tls.crt --from-file=./sidecred-tls/tls.key"
        " --from-file=./sidecred-tls/ca.crt --dry-run=client -o yaml | kubectl apply -f -\n"
        "helm upgrade sidecred deploy/chart --namespace sidecred --reset-then-reuse-values"
        " --set-file tls.caBundle=ca-bundle.b64\n",
    )
    _run_guide(shell, [install, forced])
    assert _gaps(_timeline(shell)) != []


# --- upgrade from chart 0.1.0 ------------------------------------------------------------


def _renames() -> dict[str, str]:
    """The guide's table: 0.1.0 value -> the cell saying what became of it."""
    section = DEPLOY_GUIDE.read_text().split("### From chart 0.1.0", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, re.M)
    return dict(rows)


def _paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        if isinstance(value, dict) and value:
            paths |= _paths(value, prefix + key + ".")
        else:
            paths.add(prefix + key)
    return paths


def _translate(old: dict[str, Any]) -> dict[str, Any]:
    """values-0.1.0.yaml rewritten by the guide's table, as an operator would."""
    renames = _renames()
    new: dict[str, Any] = {}
    for path in sorted(_paths(old)):
        value = old
        for part in path.split("."):
            value = value[part]
        cell = renames.get(path) or renames.get(f"{path}: {value}")
        if cell is None:
            target = path
        elif cell.startswith("gone"):
            replacement = re.findall(r"`(\w+): (\S+)`", cell)
            if not replacement:
                continue
            ((target, value),) = replacement
        elif path == "sidecarImage":
            repository, _, tag = value.rpartition(":")
            new.setdefault("sidecar", {})["image"] = {"repository": repository, "tag": tag}
            continue
        else:
            target = re.findall(r"`([\w.]+)`", cell)[0]
        node = new
        *parents, leaf = target.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return new


def test_the_table_covers_every_value_0_2_0_dropped() -> None:
    old = _paths(yaml.safe_load((FIXTURES / "chart-0.1.0-values.yaml").read_text()))
    current = _paths(yaml.safe_load((render.CHART_DIR / "values.yaml").read_text()))
    dropped = old - current
    assert "sidecarImage" in dropped
    renames = _renames()
    assert dropped <= {key.split(":")[0] for key in renames}, dropped - set(renames)


def _upgrade_blocks() -> list[Block]:
    return [b for b in sh_blocks(DEPLOY_GUIDE) if b.heading == "From chart 0.1.0"]


def test_upgrade_keeps_0_1_0_values_that_were_not_renamed(tmp_path: Path) -> None:
    shell = _shell(tmp_path)
    _run_guide(shell, _upgrade_blocks())
    # --reset-then-reuse-values, then -f with the file the table leaves as it was.
    kept, from_file = [e["release"] for e in shell.log() if e["program"] == "helm-release"]
    assert kept["values"] == from_file["values"] == OLD_KEPT
    for release in (kept, from_file):
        settings = find(release["objects"], "ConfigMap")["data"]
        assert settings["SIDECRED_BASE_ROLE_ARN"] == OLD_KEPT["baseRoleArn"]
        assert settings["SIDECRED_REGION"] == "eu-west-1"
        assert find(release["objects"], "Deployment")["spec"]["replicas"] == 3


def test_upgrade_with_renamed_values_stops_then_works_from_the_rewritten_file(
    tmp_path: Path,
) -> None:
    shell = _shell(tmp_path)
    get, keep, rewritten = [b for b in _upgrade_blocks() if "helm " in b.text]
    shell.preload_release("sidecred", "sidecred", OLD_RENAMED)
    result = shell.run(get)
    assert result.returncode == 0
    refused = shell.run(keep)
    assert refused.returncode != 0
    assert "sidecarImage" in refused.stderr and "not allowed" in refused.stderr
    assert not [e for e in shell.log() if e["program"] == "helm-release"]
    old = yaml.safe_load((shell.cwd / "values-0.1.0.yaml").read_text())
    assert old == OLD_RENAMED
    shell.write("values-0.2.0.yaml", yaml.safe_dump(_translate(old)))
    shell.run_ok(rewritten)
    (release,) = [e["release"] for e in shell.log() if e["program"] == "helm-release"]
    settings = find(release["objects"], "ConfigMap")["data"]
    assert settings["SIDECRED_SIDECAR_IMAGE"] == OLD_RENAMED["sidecarImage"]
    assert settings["SIDECRED_SIDECAR_MODE"] == "container"
    assert settings["SIDECRED_TOKEN_MODE"] == "env"
    assert (settings["SIDECRED_SIDECAR_PORT"], settings["SIDECRED_HEALTH_PORT"]) == (
        "61090",
        "61091",
    )
    assert settings["SIDECRED_REGION"] == "eu-west-1"


def test_reuse_values_would_fail_as_the_guide_says(tmp_path: Path) -> None:
    """`--reuse-values` renders 0.2.0's templates over 0.1.0's defaults (Helm replaces
    the chart's values with the old release's); the schema refuses them."""
    chart = tmp_path / "chart"
    shutil.copytree(render.CHART_DIR, chart)
    shutil.copy(FIXTURES / "chart-0.1.0-values.yaml", chart / "values.yaml")
    with helm_python.Chart.load(chart) as loaded, pytest.raises(helm_python.HelmError) as caught:
        loaded.render(OLD_KEPT, name="sidecred", namespace="sidecred", is_upgrade=True)
    assert "not allowed" in str(caught.value)
