"""The API stub answers the real `kubernetes` client the way an API server would."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from sidecred.dev.kube_stub import KubeApiStub, StubResponse, json_response


@pytest.fixture
def stub() -> Iterator[KubeApiStub]:
    with KubeApiStub() as stub:
        yield stub


@pytest.fixture
def api(stub: KubeApiStub) -> client.ApiClient:
    config = client.Configuration()
    config.host = stub.url
    return client.ApiClient(config)


def _pod(name: str, labels: dict[str, str]) -> dict:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }


def test_pods_list_and_get_by_label_and_namespace(stub: KubeApiStub, api: client.ApiClient) -> None:
    stub.put("pods", _pod("a", {"sidecred.dev/injected": "true"}))
    stub.put("pods", _pod("b", {}))
    core = client.CoreV1Api(api)
    listed = core.list_pod_for_all_namespaces(label_selector="sidecred.dev/injected=true")
    assert [p.metadata.name for p in listed.items] == ["a"]
    assert core.read_namespaced_pod("b", "shop").metadata.uid
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("c", "shop")
    assert err.value.status == 404
    assert stub.requests["pods.list"] == 1 and stub.requests["pods.get"] == 2
    assert stub.requests["get"] == 0  # namespace counters stay apart


def test_watch_streams_only_matching_pods(stub: KubeApiStub, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    version = core.list_pod_for_all_namespaces().metadata.resource_version
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def run() -> None:
        for event in watch.Watch().stream(
            core.list_pod_for_all_namespaces,
            label_selector="sidecred.dev/injected=true",
            resource_version=version,
            timeout_seconds=30,
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                done.set()
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    stub.put("pods", _pod("other", {}))
    stub.put("pods", _pod("a", {"sidecred.dev/injected": "true"}))
    stub.delete("pods", "a", "shop")
    assert done.wait(10)
    assert seen == [("ADDED", "a"), ("DELETED", "a")]


def test_create_conflicts_and_stale_replace(stub: KubeApiStub, api: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "one"}}
    created = coordination.create_namespaced_lease("sidecred", body)
    with pytest.raises(ApiException) as err:
        coordination.create_namespaced_lease("sidecred", body)
    assert err.value.status == 409
    created.spec.holder_identity = "two"
    replaced = coordination.replace_namespaced_lease("lock", "sidecred", created)
    assert replaced.spec.holder_identity == "two"
    created.spec.holder_identity = "three"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        coordination.replace_namespaced_lease("lock", "sidecred", created)
    assert err.value.status == 409
    assert stub.get("leases", "lock", "sidecred")["spec"]["holderIdentity"] == "two"


def test_routes_answer_before_storage(stub: KubeApiStub, api: client.ApiClient) -> None:
    def review(request) -> StubResponse:
        return json_response(201, {"echo": request.match.group(1), "body": request.body.decode()})

    stub.route("POST", r"/apis/x/v1/(\w+)", review, counter="x")
    response = api.call_api(
        "/apis/x/v1/things", "POST", body={"a": 1}, response_types_map={201: "object"}
    )
    assert response[0] == {"echo": "things", "body": '{"a": 1}'}
    assert stub.requests["x"] == 1


def test_the_stub_as_a_context_manager_listens_only_inside() -> None:
    with KubeApiStub() as stub:
        api = client.CoreV1Api(client.ApiClient(client.Configuration(host=stub.url)))
        assert api.list_namespace().items == []
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        api.list_namespace(_request_timeout=2)


def test_lists_page_by_page_with_one_resource_version(
    stub: KubeApiStub, api: client.ApiClient
) -> None:
    for index in range(5):
        stub.put("pods", _pod(f"p{index}", {"sidecred.dev/injected": "true"}))
    stub.put("pods", _pod("plain", {}))
    core = client.CoreV1Api(api)
    first = core.list_pod_for_all_namespaces(label_selector="sidecred.dev/injected=true", limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    stub.delete("pods", "p3", "shop")  # gone before its page: not sent
    rest = core.list_pod_for_all_namespaces(limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p4"]
    assert rest.metadata._continue is None
    assert rest.metadata.resource_version == first.metadata.resource_version


def test_a_continue_token_older_than_a_compaction_is_expired(
    stub: KubeApiStub, api: client.ApiClient
) -> None:
    for index in range(3):
        stub.put("pods", _pod(f"p{index}", {}))
    core = client.CoreV1Api(api)
    first = core.list_pod_for_all_namespaces(limit=1)
    stub.compact()
    with pytest.raises(ApiException) as err:
        core.list_pod_for_all_namespaces(limit=1, _continue=first.metadata._continue)
    assert err.value.status == 410 and "too old" in err.value.body
