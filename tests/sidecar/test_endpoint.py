"""Credential and health responses, the cache's failure policy, with an injected clock.

The refresh loop calls the real STS source (what `sidecred fetch` runs), in a
thread of this process, against a scripted STS on loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import SidecarConfig, load_config
from sidecred.sidecar.credentials import Credentials, account_from_arn
from sidecred.sidecar.endpoint import CredentialEndpoint, HealthEndpoint, token_matches
from sidecred.sidecar.fetch import fetch_credentials
from sidecred.sidecar.refresh_loop import refresh_once
from sidecred.sidecar.server import Request
from sidecred.sidecar.wire import format_expiration
from tests.sidecar.sidecar_process import sidecar_env
from tests.support.scripted_sts import access_denied, error_xml, success_xml
from tests.support.wire import CREDENTIAL_KEYS

TOKEN = "tok-" + "a" * 40


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Switchable:
    """STS behaviour a test flips between answering and refusing."""

    def __init__(self, clock: Clock) -> None:
        self.refuse = False
        self.throttle = False
        self.clock = clock

    def __call__(self, params):
        if self.refuse:
            return access_denied(params)
        if self.throttle:
            return 400, error_xml("Throttling", "Rate exceeded")
        return 200, success_xml(params, issued=self.clock())


class InProcessSource:
    """The source `sidecred fetch` runs, called in a thread here instead of a child process."""

    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.role_arn = config.role_arn
        self.session_name = "shop.web"

    async def fetch(self) -> Credentials:
        return await asyncio.to_thread(fetch_credentials, self.config)


@pytest.fixture
def setup(scripted_sts_factory, tmp_path: Path, monkeypatch):
    clock = Clock()
    behaviour = Switchable(clock)
    sts = scripted_sts_factory(behaviour)
    env = sidecar_env(tmp_path, sts.url)
    for name in ("AWS_ENDPOINT_URL_STS", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, env[name])
    config = load_config(env)
    cache = CredentialCache(config.role_arn, clock=clock, rng=random.Random(1))
    creds = CredentialEndpoint(cache, TOKEN, clock)
    health = HealthEndpoint(creds, clock)
    return behaviour, sts, clock, cache, creds, health, InProcessSource(config)


def get(path: str, token: str | None = TOKEN, method: str = "GET") -> Request:
    headers = {"authorization": token} if token is not None else {}
    return Request(method, path, "HTTP/1.1", headers)


def test_credentials_response_format(setup):
    _, sts, _, cache, creds, health, source = setup
    assert asyncio.run(refresh_once(cache, source))
    response = creds(get("/v1/credentials"))
    assert response.status == 200 and response.content_type == "application/json"
    body = json.loads(response.body)
    assert list(body) == CREDENTIAL_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["Expiration"])
    assert body["AccountId"] == "123456789012"
    assert body["AccessKeyId"] == "ASIAFAULTSTSKEY00001"
    assert sts.calls[-1]["DurationSeconds"] == "3600"
    assert health(get("/readyz", None)).status == 200


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (get("/v1/credentials", None), 401),
        (get("/v1/credentials", "nope"), 403),
        (get("/v1/credentials", TOKEN + "x"), 403),
        (get("/v1/credentials", TOKEN[:-1]), 403),
        (get("/v1/credentials", "Bearer " + TOKEN), 403),
        (get("/v1/credentials", "tök"), 403),
        (get("/v1/credentials", TOKEN, "POST"), 405),
        (get("/v1/credential", TOKEN), 404),
        (get("/", TOKEN), 404),
    ],
)
def test_refusals_are_json_and_reveal_nothing(setup, request_, status):
    _, _, _, cache, creds, _, source = setup
    assert asyncio.run(refresh_once(cache, source))
    response = creds(request_)
    assert response.status == status
    body = json.loads(response.body)
    assert set(body) == {"Code", "Message", "code", "message"}
    assert "ASIA" not in response.body.decode()


def test_query_string_is_ignored(setup):
    _, _, _, cache, creds, _, source = setup
    assert asyncio.run(refresh_once(cache, source))
    assert creds(get("/v1/credentials?x=1")).status == 200


def test_token_compare():
    assert token_matches("abc", b"abc")
    assert not token_matches(None, b"abc")
    assert not token_matches("abd", b"abc")
    assert not token_matches("\u20ac", b"abc")


def test_not_yet_fetched_is_503_not_404(setup):
    _, _, _, _, creds, health, _ = setup
    response = creds(get("/v1/credentials"))
    assert response.status == 503
    assert json.loads(response.body)["Code"] == "CredentialsNotReady"
    assert health(get("/readyz", None)).status == 503
    assert health(get("/healthz", None)).status == 200


def test_refusal_at_start_gives_503_with_sts_text(setup):
    behaviour, _, _, cache, creds, health, source = setup
    behaviour.refuse = True
    assert not asyncio.run(refresh_once(cache, source))
    body = json.loads(creds(get("/v1/credentials")).body)
    assert body["Code"] == body["code"] == "AccessDenied"
    assert "Not authorized" in body["Message"] == body["message"]
    readyz = health(get("/readyz", None))
    assert readyz.status == 503 and b"AccessDenied" in readyz.body


def test_failed_refresh_keeps_serving_until_truly_expired(setup):
    behaviour, _, clock, cache, creds, health, source = setup
    assert asyncio.run(refresh_once(cache, source))
    served = creds(get("/v1/credentials")).body
    expiration = cache.held.expiration

    behaviour.refuse = True
    clock.now = cache.next_refresh
    assert not asyncio.run(refresh_once(cache, source))
    # the retry comes soon (backoff), and the old credentials are still served
    assert cache.next_refresh <= clock.now + timedelta(seconds=1)
    assert creds(get("/v1/credentials")).body == served
    # A refusal turns the pod not ready at once, saying why and what is still served.
    readyz = health(get("/readyz", None))
    assert readyz.status == 503
    assert b"not ready: AccessDenied: Not authorized" in readyz.body
    assert (
        f"still serving the credentials held, valid until {format_expiration(expiration)}".encode()
        in readyz.body
    )

    clock.now = expiration - timedelta(seconds=1)
    assert creds(get("/v1/credentials")).body == served

    clock.now = expiration
    response = creds(get("/v1/credentials"))
    assert response.status == 503
    body = json.loads(response.body)
    assert body["Code"] == "AccessDenied"
    assert f"expired at {format_expiration(expiration)}" in body["Message"]
    assert "last STS error: Not authorized" in body["Message"]
    assert health(get("/readyz", None)).status == 503

    behaviour.refuse = False
    assert asyncio.run(refresh_once(cache, source))
    assert creds(get("/v1/credentials")).status == 200


def test_transient_failure_keeps_serving_and_ready(setup):
    behaviour, _, clock, cache, creds, health, source = setup
    assert asyncio.run(refresh_once(cache, source))
    served = creds(get("/v1/credentials")).body
    behaviour.throttle = True
    clock.now = cache.next_refresh
    assert not asyncio.run(refresh_once(cache, source))
    assert cache.last_error is not None and cache.last_error.code == "Throttling"
    assert creds(get("/v1/credentials")).body == served
    assert health(get("/readyz", None)).status == 200


def test_backoff_grows_while_sts_refuses(setup):
    behaviour, _, clock, cache, _, _, source = setup
    behaviour.refuse = True
    ceilings = []
    for _ in range(8):
        asyncio.run(refresh_once(cache, source))
        ceilings.append((cache.next_refresh - clock.now).total_seconds())
    assert all(0 <= d <= 60 for d in ceilings)
    assert cache.failures_in_row == 8 and cache.fetch_failures == 8


def test_metrics_count_responses(setup):
    _, _, _, cache, creds, health, source = setup
    asyncio.run(refresh_once(cache, source))
    creds(get("/v1/credentials"))
    creds(get("/v1/credentials", "bad"))
    text = health(get("/metrics", None)).body.decode()
    assert 'sidecred_credential_requests_total{role="pod",code="200"} 1' in text
    assert 'sidecred_credential_requests_total{role="pod",code="403"} 1' in text
    assert 'sidecred_sts_calls_total{role="pod"} 1' in text
    assert 'sidecred_ready{role="pod"} 1' in text
    assert "ASIA" not in text


def test_health_refuses_other_paths_and_methods(setup):
    *_, health, _ = setup
    assert health(get("/v1/credentials", None)).status == 404
    assert health(get("/readyz", None, "POST")).status == 405


def test_account_from_arn():
    assert account_from_arn("arn:aws:sts::111122223333:assumed-role/r/s") == "111122223333"
    assert account_from_arn("nonsense") == ""


def test_first_credentials_and_recovery_desync_later_refreshes_are_steady(setup):
    behaviour, _, clock, cache, _, _, source = setup
    policy = cache.policy

    def window(desync: bool) -> tuple[datetime, datetime]:
        held = cache.held
        session = held.expiration - held.issued_at
        start = held.issued_at + (
            session * policy.earliest_desync_fraction if desync else session / 2
        )
        return start, held.expiration - policy.latest_remaining

    def scheduled_in(desync: bool) -> bool:
        start, end = window(desync)
        return start <= cache.next_refresh <= end

    # Many first fetches: some land before the steady window (desync), none after it.
    firsts = []
    for seed in range(20):
        cache.held, cache.rng = None, random.Random(seed)
        assert asyncio.run(refresh_once(cache, source))
        assert scheduled_in(desync=True)
        firsts.append(cache.next_refresh < window(desync=False)[0])
    assert any(firsts)

    # A steady refresh stays in the steady window.
    clock.now = cache.next_refresh
    assert asyncio.run(refresh_once(cache, source))
    assert scheduled_in(desync=False)

    # After an outage, the recovery spreads again.
    behaviour.refuse = True
    clock.now = cache.next_refresh
    assert not asyncio.run(refresh_once(cache, source))
    behaviour.refuse = False
    recovered = []
    for seed in range(20):
        cache.failures_in_row, cache.rng = 1, random.Random(seed)
        assert asyncio.run(refresh_once(cache, source))
        assert scheduled_in(desync=True)
        recovered.append(cache.next_refresh < window(desync=False)[0])
    assert any(recovered)
