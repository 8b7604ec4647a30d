"""sidecred's injected pods as the plugin lists them: by sidecred's label, narrowed by the
user's `-l` selector, in one namespace or all."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from sidecred.kube.watch import INJECTED_POD_SELECTOR


def selector_with(user_selector: str | None) -> str:
    """sidecred's label, and the user's selector (kubectl's syntax) if any."""
    return ",".join(s for s in (INJECTED_POD_SELECTOR, (user_selector or "").strip()) if s)


def list_injected(
    api: client.CoreV1Api, namespace: str | None, user_selector: str | None = None
) -> list[dict[str, Any]]:
    """The injected pods of `namespace` (None: every namespace), as the API returns them."""
    selector = selector_with(user_selector)
    if namespace is None:
        listed = api.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
    else:
        listed = api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)  # fmt: skip
    items: list[dict[str, Any]] = json.loads(listed.data).get("items") or []
    return items
