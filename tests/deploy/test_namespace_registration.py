"""The chart's registration of Namespace reviews: its matchConditions,
evaluated with cel-python as the API server evaluates them, send /validate exactly the
namespace fixtures (tests/webhook/fixtures/namespace-*.yaml) whose Namespace carries a policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecred.webhook.namespace_review import policy_annotations
from tests.deploy.chart_support import find, rendered
from tests.deploy.webhook_selection import CALLED, SKIPPED, configuration_outcome
from tests.webhook.test_namespace_review import PATHS, load


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_the_chart_sends_exactly_the_namespaces_with_a_policy(path: Path) -> None:
    """Sent when the Namespace carries a policy annotation; otherwise the rules match but
    the conditions do not (SKIPPED), so the webhook never sees it."""
    request = load(path)["request"]
    config = find(rendered("defaults"), "ValidatingWebhookConfiguration")
    carries_policy = bool(policy_annotations(request["object"]))
    assert configuration_outcome(config, request) == (CALLED if carries_policy else SKIPPED)
