"""Every metric family the broker adds is in the operator's guide, under its stored name."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sidecred.broker.metrics import BrokerMetrics

GUIDE = Path(__file__).resolve().parents[2] / "deploy" / "README.md"


def test_the_guide_lists_every_broker_metric() -> None:
    text = BrokerMetrics().render().decode()
    suffix = {"counter": "_total"}
    names = {
        f.name + suffix.get(f.type, "")
        for f in text_string_to_metric_families(text)
        if f.name.startswith("sidecred_broker_") and not f.name.endswith("_created")
    }
    assert len(names) == 8
    guide = GUIDE.read_text()
    assert not sorted(n for n in names if f"`{n}`" not in guide)
