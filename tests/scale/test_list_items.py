"""A List's items parsed one at a time are exactly what parsing it whole gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecred.kube.list_items import list_items

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def parsed(text: str) -> tuple[list[Any], dict[str, Any]]:
    fields: dict[str, Any] = {}
    return list(list_items(text, fields)), fields


@given(
    items=st.lists(JSON, max_size=6),
    others=st.dictionaries(st.text().filter(lambda k: k != "items"), JSON, max_size=4),
    indent=st.sampled_from([None, 0, 2]),
    first=st.booleans(),
)
def test_items_and_fields_match_a_whole_parse(
    items: list[Any], others: dict[str, Any], indent: int | None, first: bool
) -> None:
    document = {"items": items, **others} if first else {**others, "items": items}
    text = json.dumps(document, indent=indent)
    assert parsed(text) == (items, others)


def test_a_list_without_items_has_none() -> None:
    assert parsed('{"metadata": {"resourceVersion": "7"}, "items": null}') == (
        [],
        {"metadata": {"resourceVersion": "7"}, "items": None},
    )


@pytest.mark.parametrize(
    "text", ["", "[]", '{"items": [1, 2}', '{"a": 1 "b": 2}', '{"items": [1,', '{"items" 1}']
)
def test_what_is_not_a_list_object_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parsed(text)
