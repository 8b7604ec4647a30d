"""An in-memory namespace source with NamespaceCache's interface, for tests that run the
webhook app in process: the namespaces given are found, every other name is not."""

from __future__ import annotations

from typing import Any

from sidecred.kube.watch import CACHE, NOT_FOUND, Lookup


class StaticNamespaces:
    synced = True
    last_error = ""

    def __init__(self, *namespaces: dict[str, Any]) -> None:
        self._by_name = {ns["metadata"]["name"]: ns for ns in namespaces}

    def cached(self, name: str) -> dict[str, Any] | None:
        return self._by_name.get(name)

    def get(self, name: str) -> Lookup:
        found = self._by_name.get(name)
        if found is None:
            return Lookup(None, NOT_FOUND, f'namespace "{name}" not found')
        return Lookup(found, CACHE)
