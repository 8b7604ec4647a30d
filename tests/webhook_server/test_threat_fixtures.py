"""Every attack fixture (a `threat:` key) sent to the real webhook process over TLS.

The pure decision is tested on the same fixtures in tests/webhook/test_fixtures.py;
this proves the running webhook, reached as the API server reaches it (TLS, the
namespace read from the API server stub), gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecred.dev.kube_stub import KubeApiStub
from tests.webhook.fixture_cases import fixture_paths, load_case, request_of

from .conftest import start_stub, wait_until
from .webhook_process import SNI, WebhookProcess, issue_certificates, post_review, start_webhook

CASES = {p.stem: load_case(p) for p in fixture_paths() if "threat" in load_case(p)}
ConfigKey = tuple[tuple[str, str], ...]


def config_key(case: dict[str, Any]) -> ConfigKey:
    return tuple(sorted((k, str(v)) for k, v in (case.get("config") or {}).items()))


def flags_of(key: ConfigKey, broker_ca: Path) -> list[str]:
    """The webhook flags for a fixture's config overrides (the broker's CA as a real file)."""
    flags: list[str] = []
    for name, value in key:
        if name == "broker_ca":
            flags += ["--broker-ca-file", str(broker_ca)]
        elif value == "True":
            flags.append("--" + name.replace("_", "-"))  # a switch
        else:
            flags += ["--" + name.replace("_", "-"), value]
    return flags


@pytest.fixture(scope="module")
def stub() -> Iterator[KubeApiStub]:
    api = start_stub()
    for case in CASES.values():
        namespace = case.get("namespace")
        name = (namespace or {}).get("metadata", {}).get("name")
        if name and name not in ("shop", "default"):
            api.add_namespace(name, namespace["metadata"].get("annotations") or {})
    yield api
    api.stop()


@pytest.fixture(scope="module")
def webhooks(
    stub: KubeApiStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[ConfigKey, httpx.Client]]:
    """One running webhook per distinct fixture configuration, each with a ready client."""
    broker_tls = tmp_path_factory.mktemp("broker-tls")
    issue_certificates(broker_tls)
    processes: list[WebhookProcess] = []
    clients: dict[ConfigKey, httpx.Client] = {}
    try:
        for key in sorted({config_key(case) for case in CASES.values()}):
            flags = flags_of(key, broker_tls / "ca.crt")
            process = start_webhook(tmp_path_factory.mktemp("webhook"), stub.url, *flags)
            processes.append(process)
            client = clients[key] = process.client()
            wait_until(
                lambda c=client: c.get("/readyz", extensions=SNI).status_code == 200,
                what="/readyz",
            )
        yield clients
    finally:
        for client in clients.values():
            client.close()
        for process in processes:
            process.stop()


@pytest.mark.parametrize("name", sorted(CASES))
def test_attack_fixture_over_tls(name: str, webhooks: dict[ConfigKey, httpx.Client]) -> None:
    case = CASES[name]
    expect = case["expect"]
    client = webhooks[config_key(case)]
    path = "/" + case.get("webhook", "mutate")
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request_of(case),
    }
    response = post_review(client, path, body)
    assert response["allowed"] is expect["allowed"], response
    if expect["allowed"]:
        return
    assert response["status"]["code"] == expect.get("code", 403)
    messages = expect.get("message") or []
    for fragment in [messages] if isinstance(messages, str) else messages:
        assert fragment in response["status"]["message"]
    assert "patch" not in response
