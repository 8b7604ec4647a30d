"""pods.canonical: the one definition of the sidecar that admission and the broker share.

The sidecar is judged by the properties that decide who gets which role. Three
tables: what an upgrade or another webhook changes (still the sidecar), what a
forger changes (refused, with the reason named), and configurations A and B
(injected under one, judged under the other).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from sidecred.certs.generate import build_ca, certificate_pem
from sidecred.pods.canonical import (
    calls_sidecar,
    canonical_sidecar,
    check_sidecar,
    image_repository,
    redirecting_env,
    served_port,
)
from sidecred.pods.settings import Settings
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch
from sidecred.webhook.review import pod_request

CONFIG = Settings(base_role_arn="arn:aws:iam::111122223333:role/", namespace_policy="off")
ROLE = "arn:aws:iam::111122223333:role/shop-reader"


def a_ca() -> str:
    return certificate_pem(build_ca("broker-ca", dt.datetime.now(dt.UTC), 1).certificate).decode()


BROKER = dataclasses.replace(
    CONFIG, credential_source="broker", broker_url="https://broker.sidecred.svc", broker_ca=a_ca()
)


def injected_pod(config: Settings = CONFIG, annotations: dict[str, str] | None = None) -> dict:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "annotations": {"iam.amazonaws.com/role": "shop-reader", **(annotations or {})},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    decision = decide_mutation(pod_request(pod), None, config, new_token=lambda: "t" * 43)
    assert decision.allowed and decision.patch
    return apply_patch(pod, decision.patch)


def sidecar_of(pod: dict) -> dict[str, Any]:
    spec = pod["spec"]
    return next(
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "sidecred"
    )


def env_entry(sidecar: dict, name: str) -> dict:
    return next(e for e in sidecar["env"] if e["name"] == name)


def set_env(name: str, value: str) -> Callable[[dict], None]:
    def change(sidecar: dict) -> None:
        for entry in sidecar["env"]:
            if entry["name"] == name:
                entry.clear()
                entry.update(name=name, value=value)
                return
        sidecar["env"].append({"name": name, "value": value})

    return change


def volume(pod: dict, name: str) -> dict:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("ghcr.io/sidecred/sidecred-sidecar:0.1.0", "ghcr.io/sidecred/sidecred-sidecar"),
        ("ghcr.io/sidecred/sidecred-sidecar@sha256:ab", "ghcr.io/sidecred/sidecred-sidecar"),
        ("ghcr.io/sidecred/sidecred-sidecar:0.2.0@sha256:ab", "ghcr.io/sidecred/sidecred-sidecar"),
        ("GHCR.io/Sidecred/sidecred-sidecar:1", "ghcr.io/sidecred/sidecred-sidecar"),
        ("localhost:5000/sidecred:dev", "localhost:5000/sidecred"),
        ("busybox", "docker.io/library/busybox"),
        ("sidecred/sidecred:1", "docker.io/sidecred/sidecred"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


@pytest.mark.parametrize(
    ("command", "args", "runs"),
    [
        (["sidecred", "sidecar"], None, True),
        (["/usr/local/bin/sidecred"], ["sidecar", "--wait-ready"], True),
        (["sh", "-c"], ["exec sidecred   sidecar"], True),
        (["python3", "-m", "sidecred"], ["sidecar"], True),
        (["python3", "-c", "from sidecred.sidecar.main import run; run()"], None, True),
        (None, ["sidecar"], True),
        (["sidecred", "check", "-f", "pod.yaml"], None, False),
        (["envoy", "--sidecar"], None, False),
        (["python", "app.py"], ["sidecar"], False),
        (None, None, False),
    ],
)
def test_calls_sidecar(command: list[str] | None, args: list[str] | None, runs: bool) -> None:
    container = {"name": "c", "image": "x", "command": command, "args": args}
    assert calls_sidecar(container) is runs


@pytest.mark.parametrize(
    ("name", "redirects"),
    [
        ("AWS_ENDPOINT_URL_STS", True),
        ("AWS_ENDPOINT_URL", True),
        ("AWS_CA_BUNDLE", True),
        ("AWS_REGION", True),
        ("HTTPS_PROXY", True),
        ("https_proxy", True),
        ("NO_PROXY", True),
        ("ALL_PROXY", True),
        ("SSL_CERT_FILE", True),
        ("REQUESTS_CA_BUNDLE", True),
        ("NODE_EXTRA_CA_CERTS", True),
        ("SSLKEYLOGFILE", True),
        ("OPENSSL_CONF", True),
        ("PYTHONPATH", True),
        ("PYTHONSTARTUP", True),
        ("LD_PRELOAD", True),
        ("PATH", True),
        ("HOME", True),
        ("LOCALDOMAIN", True),
        ("SIDECRED_RETRY_CAP_SECONDS", True),
        ("TZ", False),
        ("LANG", False),
        ("GOMAXPROCS", False),
        ("OTEL_SERVICE_NAME", False),
    ],
)
def test_redirecting_env(name: str, redirects: bool) -> None:
    assert redirecting_env(name) is redirects


def test_the_injected_sidecar_is_canonical_and_the_api_servers_defaults_are_tolerated() -> None:
    pod = injected_pod()
    assert check_sidecar(pod, CONFIG) == check_sidecar(pod, CONFIG, "shop")
    verdict = check_sidecar(pod, CONFIG)
    assert verdict.canonical and verdict.problem is None
    assert verdict.location == ("initContainers", 0)
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar == canonical_sidecar(pod, CONFIG)
    # What the API server and AlwaysPullImages add or normalise.
    sidecar["terminationMessagePath"] = "/dev/termination-log"
    sidecar["imagePullPolicy"] = "Always"
    sidecar["resources"] = {"requests": {"cpu": "0.01"}}
    sidecar["startupProbe"]["successThreshold"] = 1
    sidecar["startupProbe"]["httpGet"]["scheme"] = "HTTP"
    for entry in sidecar["env"]:
        if "valueFrom" in entry:
            entry["valueFrom"]["fieldRef"].pop("apiVersion")  # the API server fills v1 in
    volume(pod, "sidecred-sa-token")["projected"]["defaultMode"] = 420
    assert check_sidecar(pod, CONFIG).canonical


def kyverno_env_everywhere(sidecar: dict) -> None:
    sidecar["env"].append({"name": "TZ", "value": "Europe/Berlin"})


# Changes an upgrade, another replica or another mutating webhook makes: still the sidecar.
STILL_THE_SIDECAR: dict[str, Callable[[dict], None]] = {
    "new image tag": lambda s: s.update(image="ghcr.io/sidecred/sidecred-sidecar:0.2.0"),
    "pinned by digest": lambda s: s.update(
        image="ghcr.io/sidecred/sidecred-sidecar@sha256:" + "a" * 64
    ),
    "registry case": lambda s: s.update(image="GHCR.IO/sidecred/sidecred-sidecar:0.1.0"),
    "resources": lambda s: s.update(resources={"limits": {"memory": "256Mi"}}),
    "pull policy": lambda s: s.update(imagePullPolicy="Always"),
    "probe timings": lambda s: s["startupProbe"].update(periodSeconds=5, failureThreshold=60),
    "probes removed": lambda s: [s.pop("startupProbe"), s.pop("livenessProbe")],
    "readiness probe added": lambda s: s.update(
        readinessProbe={"httpGet": {"path": "/readyz", "port": 61081}}
    ),
    "terminationMessagePolicy": lambda s: s.update(terminationMessagePolicy="File"),
    "TZ on every container": kyverno_env_everywhere,
    "LANG from a ConfigMap": lambda s: s["env"].append(
        {"name": "LANG", "valueFrom": {"configMapKeyRef": {"name": "locale", "key": "lang"}}}
    ),
    "region set": set_env("SIDECRED_REGION", "eu-central-1"),
    "GovCloud region": set_env("SIDECRED_REGION", "us-gov-west-1"),
    "session length": set_env("SIDECRED_SESSION_DURATION", "7200"),
    "credential port": set_env("SIDECRED_PORT", "61090"),
    "health port": set_env("SIDECRED_HEALTH_PORT", "61091"),
    "drain time": set_env("SIDECRED_DRAIN_SECONDS", "30"),
    "sidecar mode env": set_env("SIDECRED_SIDECAR_MODE", "container"),
    "ports list": lambda s: s.update(ports=[{"containerPort": 61091, "name": "h"}]),
    "stricter user": lambda s: s["securityContext"].update(runAsUser=70000, runAsGroup=70000),
    "Localhost seccomp": lambda s: s["securityContext"].update(
        seccompProfile={"type": "Localhost", "localhostProfile": "sidecred.json"}
    ),
    "stdin false spelled out": lambda s: s.update(stdin=False, tty=False),
    "preStop sleep": lambda s: s.update(lifecycle={"preStop": {"sleep": {"seconds": 5}}}),
}


@pytest.mark.parametrize("change", STILL_THE_SIDECAR.values(), ids=STILL_THE_SIDECAR)
def test_what_upgrades_and_other_webhooks_change_keeps_the_sidecar(change: Callable) -> None:
    pod = injected_pod()
    change(sidecar_of(pod))
    verdict = check_sidecar(pod, CONFIG)
    assert verdict.problem is None, verdict.problem.message
    assert verdict.canonical


def test_a_mirror_is_the_sidecar_only_when_configured() -> None:
    pod = injected_pod()
    sidecar_of(pod)["image"] = "registry.corp.example/mirror/sidecred-sidecar:0.1.0"
    refused = check_sidecar(pod, CONFIG).problem
    assert refused is not None and refused.reason == "forged-sidecar"
    assert "is not from a sidecar repository" in refused.message
    assert "--sidecar-repositories" in refused.message
    mirrored = dataclasses.replace(
        CONFIG, sidecar_repositories=("registry.corp.example/mirror/sidecred-sidecar",)
    )
    assert check_sidecar(pod, mirrored).canonical
    # A mirror's image in another container is a forged sidecar like the original's.
    pod["spec"]["containers"].append({"name": "x", "image": sidecar_of(pod)["image"]})
    problem = check_sidecar(pod, mirrored).problem
    assert problem is not None and 'container "x" runs the sidecar image' in problem.message


def test_a_sidecar_in_containers_is_the_sidecar_in_native_mode_and_back() -> None:
    native, container = CONFIG, dataclasses.replace(CONFIG, sidecar_mode="container")
    assert check_sidecar(injected_pod(container), native).canonical
    assert check_sidecar(injected_pod(native), container).canonical


def exec_probe(sidecar: dict) -> None:
    sidecar["livenessProbe"] = {
        "exec": {
            "command": [
                "sh",
                "-c",
                "cp /var/run/secrets/sidecred/serviceaccount/token /var/run/sidecred/",
            ]
        }
    }


def extra_mount(sidecar: dict) -> None:
    sidecar["volumeMounts"].append({"name": "shared", "mountPath": "/home/nonroot"})


def field_ref(path: str) -> Callable[[dict], None]:
    def change(sidecar: dict) -> None:
        env_entry(sidecar, "SIDECRED_POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"] = path

    return change


# What a forger changes: each is refused, naming what is wrong.
FORGERIES: dict[str, tuple[Callable[[dict], None], str]] = {
    "image from elsewhere": (lambda s: s.update(image="evil.example/x:1"), 'image "evil.example/x:1" is not from'),
    "other command": (lambda s: s.update(command=["sh", "-c", "sidecred sidecar"]), "command is"),
    "args": (lambda s: s.update(args=["--debug"]), "args is set"),
    "workingDir": (lambda s: s.update(workingDir="/tmp"), "workingDir is set"),
    "envFrom": (lambda s: s.update(envFrom=[{"configMapRef": {"name": "x"}}]), "envFrom is set"),
    "exec probe": (exec_probe, "livenessProbe runs a command inside the sidecar"),
    "exec preStop": (
        lambda s: s.update(lifecycle={"preStop": {"exec": {"command": ["cat", "/etc/passwd"]}}}),
        "lifecycle.preStop runs a command",
    ),
    "probe on another host": (
        lambda s: s["startupProbe"]["httpGet"].update(host="10.0.0.1"), "asks another host"
    ),
    "termination message from the token": (
        lambda s: s.update(terminationMessagePath="/var/run/secrets/sidecred/serviceaccount/token"),
        "terminationMessagePath is",
    ),
    "another role": (set_env("SIDECRED_ROLE_ARN", "arn:aws:iam::111122223333:role/admin"), "env SIDECRED_ROLE_ARN is"),
    "another session name": (set_env("SIDECRED_SESSION_NAME", "kube-system.x"), "env SIDECRED_SESSION_NAME is set"),
    "namespace spelled out": (set_env("SIDECRED_POD_NAMESPACE", "kube-system"), "env SIDECRED_POD_NAMESPACE is"),
    "namespace from another field": (field_ref("metadata.labels['ns']"), "env SIDECRED_POD_NAMESPACE is"),
    "another token path": (set_env("SIDECRED_WEB_IDENTITY_TOKEN_FILE", "/tmp/t"), "env SIDECRED_WEB_IDENTITY_TOKEN_FILE"),
    "another source": (set_env("SIDECRED_CREDENTIAL_SOURCE", "assume-role"), "env SIDECRED_CREDENTIAL_SOURCE is"),
    "a broker URL": (set_env("SIDECRED_BROKER_URL", "https://evil.example"), "env SIDECRED_BROKER_URL is set"),
    "region naming another host": (set_env("SIDECRED_REGION", "evil.example/#"), "not a literal value that is an AWS region"),
    "region from a ConfigMap": (
        lambda s: s["env"].append({"name": "SIDECRED_REGION", "valueFrom": {"configMapKeyRef": {"name": "r", "key": "r"}}}),
        "taken from elsewhere",
    ),
    "STS endpoint": (set_env("AWS_ENDPOINT_URL_STS", "https://evil.example"), "env AWS_ENDPOINT_URL_STS is set"),
    "proxy": (set_env("HTTPS_PROXY", "http://evil.example:3128"), "env HTTPS_PROXY is set"),
    "lower-case proxy": (set_env("https_proxy", "http://evil.example:3128"), "env https_proxy is set"),
    "CA bundle": (set_env("AWS_CA_BUNDLE", "/var/run/sidecred/ca.pem"), "env AWS_CA_BUNDLE is set"),
    "retry cap": (set_env("SIDECRED_RETRY_CAP_SECONDS", "1"), "env SIDECRED_RETRY_CAP_SECONDS is set"),
    "PYTHONPATH": (set_env("PYTHONPATH", "/var/run/sidecred"), "env PYTHONPATH is set"),
    "HOME": (set_env("HOME", "/var/run/sidecred"), "env HOME is set"),
    "extra mount": (extra_mount, 'volumeMounts has "shared"'),
    "token mount elsewhere": (
        lambda s: s["volumeMounts"][1].update(mountPath="/var/run/sidecred/sa"),
        'volumeMounts[sidecred-sa-token] is not where',
    ),
    "token mount subPath": (lambda s: s["volumeMounts"][1].update(subPath="token"), "is not where"),
    "token mount missing": (lambda s: s["volumeMounts"].pop(1), 'volumeMounts lacks "sidecred-sa-token"'),
    "root": (lambda s: s["securityContext"].update(runAsUser=0), "runAsUser is not a non-root user"),
    "root allowed": (lambda s: s["securityContext"].update(runAsNonRoot=False), "runAsNonRoot is not true"),
    "privileged": (lambda s: s["securityContext"].update(privileged=True), "privileged is set"),
    "capability added": (lambda s: s["securityContext"]["capabilities"].update(add=["SYS_PTRACE"]), "capabilities add"),
    "capabilities kept": (lambda s: s["securityContext"].pop("capabilities"), "do not drop ALL"),
    "writable root": (lambda s: s["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    "escalation": (lambda s: s["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    "unconfined seccomp": (lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    "unmasked /proc": (lambda s: s["securityContext"].update(procMount="Unmasked"), "procMount"),
    "spc_t": (lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"),
    "no security context": (lambda s: s.pop("securityContext"), "securityContext is missing"),
    "not restarted": (lambda s: s.pop("restartPolicy"), "without restartPolicy Always"),
}  # fmt: skip


@pytest.mark.parametrize(("change", "fragment"), FORGERIES.values(), ids=FORGERIES)
def test_what_decides_who_gets_which_role_is_compared(change: Callable, fragment: str) -> None:
    pod = injected_pod()
    change(sidecar_of(pod))
    verdict = check_sidecar(pod, CONFIG)
    assert not verdict.canonical
    assert verdict.problem is not None and verdict.problem.reason == "forged-sidecar"
    assert fragment in verdict.problem.message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda v: v["projected"]["sources"][0]["serviceAccountToken"].update(audience="sts.amazonaws.com"), "its audience is"),
        (lambda v: v["projected"]["sources"].append({"configMap": {"name": "x"}}), "is not one service-account token"),
        (lambda v: v.update(projected=None, hostPath={"path": "/var/run"}), 'it is ["hostPath"]'),
    ],
)  # fmt: skip
def test_the_token_volume_is_compared(change: Callable, fragment: str) -> None:
    pod = injected_pod()
    change(volume(pod, "sidecred-sa-token"))
    problem = check_sidecar(pod, CONFIG).problem
    assert problem is not None and problem.reason == "forged-sidecar"
    assert fragment in problem.message


def test_token_lifetime_and_the_token_emptydir_size_are_not_compared() -> None:
    pod = injected_pod()
    volume(pod, "sidecred-sa-token")["projected"]["sources"][0]["serviceAccountToken"][
        "expirationSeconds"
    ] = 3600
    volume(pod, "sidecred-token")["emptyDir"]["sizeLimit"] = "4Mi"
    assert check_sidecar(pod, CONFIG).canonical
    volume(pod, "sidecred-token")["emptyDir"].pop("medium")
    problem = check_sidecar(pod, CONFIG).problem
    assert problem is not None and 'its medium is null, not "Memory"' in problem.message


def test_the_broker_source_compares_the_url_but_not_the_ca() -> None:
    pod = injected_pod(BROKER)
    set_env("SIDECRED_BROKER_CA", a_ca())(sidecar_of(pod))
    assert check_sidecar(pod, BROKER).canonical  # a new broker CA on upgrade
    set_env("SIDECRED_BROKER_URL", "https://broker.evil.example")(sidecar_of(pod))
    problem = check_sidecar(pod, BROKER).problem
    assert problem is not None and "env SIDECRED_BROKER_URL is" in problem.message
    # A web-identity sidecar is not the broker's, and the other way round.
    assert not check_sidecar(injected_pod(CONFIG), BROKER).canonical
    assert not check_sidecar(injected_pod(BROKER), CONFIG).canonical


def test_annotations_decide_the_identity_env() -> None:
    notes = {"iam.amazonaws.com/session-name": "batch", "iam.amazonaws.com/external-id": "ext-1"}
    pod = injected_pod(annotations=notes)
    assert env_entry(sidecar_of(pod), "SIDECRED_SESSION_NAME")["value"] == "shop.batch"
    assert check_sidecar(pod, CONFIG).canonical
    for name, forged in (
        ("SIDECRED_SESSION_NAME", "shop.other"),
        ("SIDECRED_EXTERNAL_ID", "ext-2"),
    ):
        forged_pod = copy.deepcopy(pod)
        set_env(name, forged)(sidecar_of(forged_pod))
        problem = check_sidecar(forged_pod, CONFIG).problem
        assert problem is not None and f"env {name} is" in problem.message


def test_a_token_mode_env_sidecar_keeps_its_token_and_a_token_from_elsewhere_is_refused() -> None:
    pod = injected_pod(dataclasses.replace(CONFIG, token_mode="env"))
    assert check_sidecar(pod, CONFIG).canonical  # judged under a token-mode-file default
    token = env_entry(sidecar_of(pod), "SIDECRED_AUTH_TOKEN")
    token.pop("value")
    token["valueFrom"] = {"secretKeyRef": {"name": "s", "key": "k"}}
    problem = check_sidecar(pod, CONFIG).problem
    assert (
        problem is not None and "env SIDECRED_AUTH_TOKEN is taken from elsewhere" in problem.message
    )
    assert "t" * 43 not in problem.message


OPERATOR_ENV = (("HTTPS_PROXY", "http://proxy.corp:3128"), ("NO_PROXY", ".svc,.cluster.local"))


def test_operator_env_reaches_the_sidecar_and_tenants_cannot_add_or_change_it() -> None:
    config = dataclasses.replace(CONFIG, sidecar_extra_env=OPERATOR_ENV)
    pod = injected_pod(config)
    sidecar = sidecar_of(pod)
    assert [e for e in sidecar["env"] if e["name"].endswith("_PROXY")] == [
        {"name": name, "value": value} for name, value in OPERATOR_ENV
    ]
    assert check_sidecar(pod, config).canonical
    # The same sidecar judged where the proxy is not configured: a tenant's proxy.
    refused = check_sidecar(pod, CONFIG).problem
    assert (
        refused is not None and "env HTTPS_PROXY is set, and only configuration" in refused.message
    )
    # Another value of a configured name; the message never shows the values.
    set_env("HTTPS_PROXY", "http://user:secret@evil.example")(sidecar)
    changed = check_sidecar(pod, config).problem
    assert (
        changed is not None
        and "env HTTPS_PROXY has a value configuration does not give" in changed.message
    )
    assert "secret" not in changed.message and "proxy.corp" not in changed.message


def test_env_an_earlier_configuration_gave_is_accepted_when_listed() -> None:
    before = dataclasses.replace(CONFIG, sidecar_extra_env=(("HTTPS_PROXY", "http://old:3128"),))
    after = dataclasses.replace(CONFIG, sidecar_extra_env=(("HTTPS_PROXY", "http://new:3128"),))
    pod = injected_pod(before)
    assert not check_sidecar(pod, after).canonical
    listed = dataclasses.replace(after, sidecar_accepted_env=before.sidecar_extra_env)
    assert check_sidecar(pod, listed).canonical
    # Added in a later release: pods injected before lack it, and are still the sidecar.
    assert check_sidecar(injected_pod(CONFIG), after).canonical


def changed(**options: Any) -> Callable[[Settings], Settings]:
    return lambda config: dataclasses.replace(config, **options)


def new_ca(config: Settings) -> Settings:
    return dataclasses.replace(config, broker_ca=a_ca())


# Chart values an upgrade may change: injected under A, still the sidecar under B, and (a
# rollback, or the replica not yet upgraded) the other way round except where marked ONE_WAY.
UPGRADES: dict[str, tuple[Settings, Callable[[Settings], Settings]]] = {
    "sidecar image tag": (CONFIG, changed(sidecar_image="ghcr.io/sidecred/sidecred-sidecar:0.2.0")),
    "sidecar image digest": (CONFIG, changed(sidecar_image="ghcr.io/sidecred/sidecred-sidecar@sha256:" + "b" * 64)),
    "moved to a mirror": (
        CONFIG,
        changed(
            sidecar_image="registry.corp.example/sidecred-sidecar:0.1.0",
            sidecar_repositories=("ghcr.io/sidecred/sidecred-sidecar",),
        ),
    ),
    "region set": (CONFIG, changed(region="eu-west-1")),
    "session duration": (CONFIG, changed(session_duration=7200)),
    "sidecar resources": (CONFIG, changed(sidecar_cpu_limit="1", sidecar_memory_limit="128Mi")),
    "token expiration": (CONFIG, changed(token_expiration=7200)),
    "drain seconds": (dataclasses.replace(CONFIG, sidecar_mode="container"), changed(drain_seconds=40)),
    "sidecar ports": (CONFIG, changed(sidecar_port=62080, health_port=62081)),
    "sidecar mode": (CONFIG, changed(sidecar_mode="container")),
    "token mode": (CONFIG, changed(token_mode="env")),
    "pull secrets": (CONFIG, changed(sidecar_image_pull_secrets=("registry-corp",))),
    "extra env added": (CONFIG, changed(sidecar_extra_env=OPERATOR_ENV)),
    "broker CA": (BROKER, new_ca),
    "broker region and tag": (BROKER, changed(region="us-east-2", sidecar_image="ghcr.io/sidecred/sidecred-sidecar:9")),
}  # fmt: skip


# The older release does not know the mirror or the proxy the newer one added: a rollback
# lists them (sidecar.repositories, sidecar.acceptedExtraEnv) while such pods run.
ONE_WAY = {"moved to a mirror", "extra env added"}


@pytest.mark.parametrize(
    ("case", "before", "upgrade"), [(k, *v) for k, v in UPGRADES.items()], ids=UPGRADES
)
def test_injected_under_one_configuration_the_sidecar_under_the_other(
    case: str, before: Settings, upgrade: Callable[[Settings], Settings]
) -> None:
    after = upgrade(before)
    directions = [(before, after)] + ([] if case in ONE_WAY else [(after, before)])
    for injected_by, judged_by in directions:
        verdict = check_sidecar(injected_pod(injected_by), judged_by)
        assert verdict.problem is None, verdict.problem.message
        assert verdict.canonical


def test_a_reinvocation_under_another_configuration_points_new_containers_at_the_pods_sidecar() -> (
    None
):
    pod = injected_pod(CONFIG)
    after = dataclasses.replace(CONFIG, sidecar_port=62080, token_mode="env")
    pod["spec"]["containers"].append({"name": "late", "image": "late:1"})
    assert served_port(pod, after) == CONFIG.sidecar_port
    decision = decide_mutation(pod_request(pod), None, after, new_token=lambda: "n" * 43)
    assert decision.allowed and decision.reason == "env-added", decision.message
    patched = apply_patch(pod, decision.patch or [])
    late = patched["spec"]["containers"][1]
    env = {e["name"]: e.get("value") for e in late["env"]}
    assert (
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        == f"http://127.0.0.1:{CONFIG.sidecar_port}/v1/credentials"
    )
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == "/var/run/sidecred/token"
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["sidecred"]


def test_an_unannotated_pod_has_no_canonical_sidecar() -> None:
    pod = copy.deepcopy(injected_pod())
    del pod["metadata"]["annotations"]["iam.amazonaws.com/role"]
    assert canonical_sidecar(pod, CONFIG) is None
    verdict = check_sidecar(pod, CONFIG)
    assert not verdict.canonical
    assert verdict.problem is not None and 'container "sidecred"' in verdict.problem.message
