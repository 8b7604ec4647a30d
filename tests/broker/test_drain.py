"""A broker rollout drops no issuance: a replica terminated while sidecars refresh.

Two real broker processes over TLS behind a Service stand-in (new connections go
to replicas whose /readyz is 200, with a cluster's propagation lag); four
keep-alive clients ask for credentials with a pod's token the whole time; one
replica gets SIGTERM and exits. Every issuance is answered with the pod's role.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
from pathlib import Path

import httpx

from sidecred.dev.processes import free_port
from tests.support.admitting_clients import answered_while_draining, terminate_while_calling
from tests.support.service_proxy import Backend, ServiceProxy, https_readiness
from tests.support.sts import start_moto, stop_moto

from .broker_process import BROKER_HOST, SNI, BrokerProcess, issue_certificates, start_broker
from .conftest import start_stub
from .pods import READER, broker_pod


def test_a_replica_terminated_while_sidecars_refresh_drops_none(tmp_path: Path) -> None:
    stub, authority = start_stub()
    sts = start_moto()
    issue_certificates(tmp_path / "tls")
    service_port = free_port()
    service_url = f"https://{BROKER_HOST}:{service_port}"
    brokers: list[BrokerProcess] = []
    proxy = None
    try:
        for index in range(2):
            home = tmp_path / f"replica-{index}"
            shutil.copytree(tmp_path / "tls", home / "tls")
            flags = ("--shutdown-delay", "5", "--broker-url", service_url)
            brokers.append(start_broker(home, stub.url, sts.url, *flags))
        ca = str(tmp_path / "tls" / "ca.crt")
        readiness = https_readiness(ca, BROKER_HOST)
        proxy = ServiceProxy([Backend(b.port) for b in brokers], readiness, port=service_port)
        config = dataclasses.replace(brokers[0].config, broker_url=service_url)
        token = authority.pod_token(stub.put("pods", broker_pod("web-drain", config=config)))

        def issue(http: httpx.Client) -> str | None:
            headers = {"Authorization": f"Bearer {token}"}
            response = http.post("/v1/credentials", headers=headers, extensions=SNI)
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:200]}"
            return None if response.json()["RoleArn"] == READER else "another role"

        victim = brokers[0]
        tally, _ = terminate_while_calling(proxy, ca, issue, victim.process)
    finally:
        if proxy is not None:
            proxy.close()
        for broker in brokers:
            broker.stop()
        stop_moto(sts)
        stub.stop()

    assert tally.drops == []
    assert victim.process.returncode == -signal.SIGTERM
    assert answered_while_draining(victim.log(), "issuance") > 0
    assert proxy.backends[1].connections > 0 and proxy.refused == 0
