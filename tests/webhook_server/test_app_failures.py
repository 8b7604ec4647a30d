"""Failures inside the app never become a 500 with a traceback.

These inject faults into the app in-process (a namespace source that raises,
a parser that raises), which a real process cannot be made to do on demand.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

import sidecred.webhook.app
from sidecred.kube.watch import Lookup
from sidecred.pods.settings import Settings
from sidecred.webhook.app import INTERNAL_ERROR_MESSAGE, create_app
from sidecred.webhook.metrics import WebhookMetrics

from .webhook_process import BASE_ROLE_ARN, pod, review

JSON = {"Content-Type": "application/json"}


class BrokenNamespaces:
    synced = False
    last_error = "HTTP 403 Forbidden"

    def get(self, name: str) -> Lookup:
        raise RuntimeError("boom: secret internals")


class AppClient:
    """Calls the ASGI app directly, one request per event loop."""

    def __init__(self) -> None:
        config = Settings(base_role_arn=BASE_ROLE_ARN)
        self.app = create_app(config, BrokenNamespaces(), WebhookMetrics())

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                return await http.request(method, path, **kwargs)

        return anyio.run(call)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture
def client() -> AppClient:
    return AppClient()


def test_unexpected_error_while_deciding_is_a_fail_closed_denial(client: AppClient) -> None:
    body = review(pod("shop-reader"))
    response = client.post("/mutate", content=json.dumps(body), headers=JSON)
    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["uid"] == body["request"]["uid"]
    assert answer["allowed"] is False
    assert answer["status"]["message"] == INTERNAL_ERROR_MESSAGE
    assert "boom" not in response.text and "Traceback" not in response.text


def test_parser_bug_is_a_400_json_error(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_parse(body: bytes) -> dict:
        raise KeyError("internal")

    monkeypatch.setattr(sidecred.webhook.app, "parse_review", broken_parse)
    response = client.post("/validate", content=b"{}", headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"error": "could not read the AdmissionReview (KeyError)"}


def test_readyz_names_the_reason(client: AppClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "namespace cache has not synced: HTTP 403 Forbidden"
