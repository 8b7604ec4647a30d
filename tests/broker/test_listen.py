"""The broker listens on both address families by default (IPv6 and dual-stack clusters)."""

from __future__ import annotations

from pathlib import Path

from tests.support.listening import assert_answers_on_both_families, needs_ipv6

from .broker_process import BROKER_HOST, start_broker
from .conftest import Cluster


@needs_ipv6
def test_by_default_the_broker_answers_on_ipv4_and_ipv6(cluster: Cluster, tmp_path: Path) -> None:
    broker = start_broker(tmp_path, cluster.stub.url, cluster.sts.url, "--host", "")
    try:
        assert_answers_on_both_families(broker, BROKER_HOST)
    finally:
        broker.stop()
