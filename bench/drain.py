"""Benchmark 10: admissions dropped while a webhook replica is terminated, with and without drain.

Two real `sidecred webhook` processes over TLS behind a Service stand-in
(tests/support/service_proxy.py: new connections go to replicas whose /readyz
is 200, as seen PROPAGATION seconds earlier, the lag of a cluster's endpoints);
four keep-alive clients admit pods the whole time; one replica gets SIGTERM.
Counted: admissions answered, and dropped (a transport error or no answer) from
the signal until 40 more have been answered through the replica that stays.
Baseline in the same run: `--shutdown-delay 0`, the stop uvicorn gives alone
(in-flight requests finish, the listener closes at once).

    python3 bench/drain.py [--rounds 3] [--delay 5]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.dev.processes import wait_until
from tests.support.admitting_clients import CallingClients
from tests.support.service_proxy import PROPAGATION_SECONDS, Backend, ServiceProxy, https_readiness
from tests.webhook_server.conftest import start_stub
from tests.webhook_server.test_drain import admit
from tests.webhook_server.webhook_process import SERVER_NAME, issue_certificates, start_webhook


def one_round(delay: int) -> tuple[int, int]:
    """(answered, dropped) around one replica's termination."""
    stub = start_stub()
    work = Path(tempfile.mkdtemp(prefix="sidecred-drain-"))
    issue_certificates(work / "tls")
    replicas = []
    proxy = clients = None
    try:
        for index in range(2):
            shutil.copytree(work / "tls", work / f"r{index}" / "tls")
            replicas.append(
                start_webhook(work / f"r{index}", stub.url, "--shutdown-delay", str(delay))
            )
        ca = str(work / "tls" / "ca.crt")
        proxy = ServiceProxy([Backend(r.port) for r in replicas], https_readiness(ca, SERVER_NAME))
        wait_until(lambda: all(b.ready for b in proxy.backends), timeout=30)
        clients = CallingClients(proxy.port, ca, admit)
        wait_until(lambda: clients.tally.answered >= 40, timeout=60)
        replicas[0].process.send_signal(signal.SIGTERM)
        wait_until(lambda: replicas[0].process.poll() is not None, timeout=60)
        at_exit = clients.tally.answered
        wait_until(lambda: clients.tally.answered >= at_exit + 40, timeout=60)
        tally = clients.stop()
        return tally.answered, len(tally.drops)
    finally:
        if clients is not None:
            clients.stop()
        if proxy is not None:
            proxy.close()
        for replica in replicas:
            replica.stop()
        stub.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=int, default=5, help="--shutdown-delay under test")
    args = parser.parse_args()
    rows, dropped = [], {}
    for delay in (0, args.delay):
        results = [one_round(delay) for _ in range(args.rounds)]
        dropped[delay] = sum(d for _, d in results)
        rows.append(
            (
                f"--shutdown-delay {delay}" + (" (baseline)" if delay == 0 else ""),
                args.rounds,
                sum(a for a, _ in results),
                dropped[delay],
                ", ".join(str(d) for _, d in results),
            )
        )
    table = support.markdown_table(
        ["webhook", "rounds", "answered", "dropped", "dropped per round"], rows
    )
    print(table)
    body = (
        "Setup: two `sidecred webhook` replicas over TLS behind a Service stand-in whose "
        f"routing lags the replicas' /readyz by {PROPAGATION_SECONDS:g} s (a cluster's "
        "endpoint propagation); four keep-alive clients admitting a pod each in a loop; "
        "SIGTERM to one replica, counted until 40 admissions after its exit. No preStop "
        "sleep here: the delay alone covers the propagation.\n\n"
        + table
        + "\n\n"
        + support.targets_table(
            [("0 admissions dropped with drain", dropped[args.delay], dropped[args.delay] == 0)]
        )
    )
    command = "python3 bench/drain.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
    support.write_section("drain", "10. Rolling a webhook replica", command, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
