"""Benchmark 3: how often real SDK clients fetch, and how often the sidecar calls STS, over a day.

A simulated day, driven step by step. The credential endpoint is the sidecar's
own code (`HttpServer`, `CredentialEndpoint`, `CredentialCache` with its real
refresh schedule) on a simulated clock, with a stand-in STS that issues
credentials expiring `session` seconds after the simulated now and counts its
calls. One listener per client, all sharing the one cache, as in one pod.

The clients are real SDKs in their own processes, with only their clock
replaced by the simulated one (bench/sdk_clients): their credential caching
and refresh logic, and their HTTP fetches, run as shipped.
- botocore (current) and botocore 1.34.41 (the oldest that re-reads the token
  file): long-running; before each simulated API call they resolve credentials
  as the signer does.
- AWS SDK for JavaScript v3 (tests/compat/js): long-running, the same.
- AWS CLI v1 (.venv-compat/awscli-v1): a new process per command, as a cron
  job runs it; `aws sts get-caller-identity` against a local moto.

Two configurations in the same run: sidecred's (1 h sessions, refreshed in the
background well before SDKs' thresholds) and a deliberately kiam-like one
(15-minute sessions, so credentials always arrive with <= 15 min left).

Targets: each client fetches at most once per refresh period (per credentials
generation the sidecar holds); STS <= 2 calls per pod-hour with 1 h sessions.

    python3 bench/sdk_economy.py [--hours 24] [--call-every 300] [--cli-every 7200]
    (needs `bash scripts/install-sdks` for the old botocore, CLI v1 and JS clients)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import support
from sidecred.sidecar import log
from sidecred.sidecar.cache import CredentialCache
from sidecred.sidecar.config import credentials_uri
from sidecred.sidecar.credentials import Credentials
from sidecred.sidecar.endpoint import CredentialEndpoint
from sidecred.sidecar.reactor import Reactor
from sidecred.sidecar.refresh_loop import refresh_once
from sidecred.sidecar.server import HttpServer, Request, Response

CLIENTS_DIR = Path(__file__).with_name("sdk_clients")
COMPAT = support.REPO / ".venv-compat"
JS_DIR = support.REPO / "tests" / "compat" / "js"
CONFIGS = {"sidecred (1 h sessions)": 3600, "kiam-like (15 min sessions)": 900}
STS_PER_POD_HOUR_TARGET = 2.0


@dataclass
class SimClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SimulatedSts:
    clock: SimClock
    session_seconds: int
    role_arn: str = support.ROLE_ARN
    session_name: str = "shop.bench"
    calls: int = 0

    async def fetch(self) -> Credentials:
        self.calls += 1
        return Credentials(
            access_key_id=f"ASIABENCH{self.calls:011d}",
            secret_access_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(60),
            expiration=self.clock() + timedelta(seconds=self.session_seconds),
            account_id=support.MOTO_ACCOUNT_ID,
            role_arn=self.role_arn,
        )


@dataclass
class CountingEndpoint:
    """The real CredentialEndpoint, noting which credentials generation each 200 carried."""

    inner: CredentialEndpoint
    cache: CredentialCache
    generations: Counter[datetime] = field(default_factory=Counter)

    def __call__(self, request: Request) -> Response:
        response = self.inner(request)
        if response.status == 200 and self.cache.held is not None:
            self.generations[self.cache.held.issued_at] += 1
        return response


@dataclass
class Client:
    name: str
    command: list[str]
    kind: str  # "long" (stdin driven) or "cli" (one process per call)
    env_extra: dict[str, str] = field(default_factory=dict)
    # Seconds left at which the client refreshes in the background (0: it refreshes
    # synchronously). JS v3's provider chain, inside its 5-minute window, returns
    # what it holds and starts a fetch it doesn't wait for
    # (@aws-sdk/credential-provider-node memoizeChain's "passiveLock"); the
    # simulated clock must not run ahead of that fetch (see the Reading below).
    background_refresh_window: float = 0.0


async def settle_background_fetch(endpoint: CountingEndpoint, before: int, what: str) -> None:
    """Wait (real time, with a deadline) until a background fetch started by the call arrived."""
    deadline = time.monotonic() + 10
    while sum(endpoint.generations.values()) <= before:
        if time.monotonic() > deadline:
            print(f"{what}: no background fetch within 10 s; the clock moves on")
            return
        await asyncio.sleep(0.005)


def clients(moto_url: str) -> list[Client]:
    found = [
        Client(
            "botocore (current)", [sys.executable, str(CLIENTS_DIR / "botocore_client.py")], "long"
        )
    ]
    old = COMPAT / "botocore-1.34.41" / "bin" / "python"
    if old.exists():
        found.append(
            Client("botocore 1.34.41", [str(old), str(CLIENTS_DIR / "botocore_client.py")], "long")
        )
    if (JS_DIR / "node_modules").exists() and shutil.which("node"):
        found.append(
            Client(
                "JS v3 (3.1174)",
                ["node", str(CLIENTS_DIR / "js_client.mjs")],
                "long",
                background_refresh_window=300.0,
            )
        )
    cli = COMPAT / "awscli-v1" / "bin" / "aws"
    if cli.exists():
        found.append(
            Client(
                "AWS CLI v1 (1.30.0), one process per command",
                [
                    str(cli),
                    "sts",
                    "get-caller-identity",
                    "--endpoint-url",
                    moto_url,
                    "--output",
                    "text",
                ],
                "cli",
            )
        )
    return found


def client_env(work: Path, uri: str, token: str, now: float) -> dict[str, str]:
    home = work / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(CLIENTS_DIR),  # sitecustomize: the simulated clock
        "SIDECRED_BENCH_CLOCK": "1",
        "SIDECRED_BENCH_NOW": f"{now:.3f}",
        "SIDECRED_BENCH_JS_DIR": str(JS_DIR),
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "AWS_REGION": support.MOTO_REGION,
        "AWS_DEFAULT_REGION": support.MOTO_REGION,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
    }


@dataclass
class ClientResult:
    name: str
    calls: int = 0
    fetches: int = 0
    max_per_generation: int = 0
    failures: int = 0


async def simulate_day(
    session_seconds: int, args: argparse.Namespace, moto_url: str, work: Path
) -> tuple[int, list[ClientResult]]:
    start = datetime.fromtimestamp(round(time.time()), UTC)
    clock = SimClock(start)
    sts = SimulatedSts(clock, session_seconds)
    cache = CredentialCache(sts.role_arn, clock=clock, rng=random.Random(args.seed))
    token = secrets.token_urlsafe(32)
    roster = clients(moto_url)
    servers: list[HttpServer] = []
    endpoints: list[CountingEndpoint] = []
    procs: list[asyncio.subprocess.Process | None] = []  # None for a CLI, run per command
    # The sidecar's own server loop, in a thread: the simulation drives the clock here.
    reactor = Reactor()
    for _ in roster:
        endpoint = CountingEndpoint(CredentialEndpoint(cache, token, clock=clock), cache)
        server = HttpServer(endpoint, "127.0.0.1", 0, reactor=reactor)
        server.start()
        servers.append(server)
        endpoints.append(endpoint)
    serving = threading.Thread(target=reactor.run, daemon=True)
    serving.start()
    results = [ClientResult(c.name) for c in roster]
    try:
        await refresh_once(cache, sts)  # the sidecar is ready before the app starts
        for client, server in zip(roster, servers, strict=True):
            if client.kind == "long":
                env = client_env(work, credentials_uri(server.port), token, start.timestamp())
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *client.command,
                        env=env,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                    )
                )
            else:
                procs.append(None)
        end = start + timedelta(hours=args.hours)
        step = timedelta(seconds=args.call_every)
        t = start
        while t < end:
            # The sidecar's background refreshes fall due between the app's calls.
            while cache.next_refresh is not None and cache.next_refresh <= t:
                clock.now = cache.next_refresh
                await refresh_once(cache, sts)
            clock.now = t
            elapsed = (t - start).total_seconds()
            for i, (client, proc) in enumerate(zip(roster, procs, strict=True)):
                if client.kind == "long":
                    assert proc is not None and proc.stdin is not None and proc.stdout is not None
                    before = sum(endpoints[i].generations.values())
                    proc.stdin.write(f"{t.timestamp():.3f}\n".encode())
                    await proc.stdin.drain()
                    answer = (await asyncio.wait_for(proc.stdout.readline(), 60)).split()
                    if not answer or not answer[0].startswith(b"ASIABENCH"):
                        results[i].failures += 1
                    results[i].calls += 1
                    window = client.background_refresh_window
                    if window and len(answer) > 1 and float(answer[1]) - t.timestamp() < window:
                        # It answered with credentials inside its refresh window, so it
                        # has started a fetch in the background: in a real app minutes
                        # pass before the next call, here only milliseconds.
                        await settle_background_fetch(endpoints[i], before, client.name)
                elif elapsed % args.cli_every == 0:
                    env = client_env(work, credentials_uri(servers[i].port), token, t.timestamp())
                    cli = await asyncio.create_subprocess_exec(
                        *client.command,
                        env=env,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.PIPE,
                    )
                    _, err = await asyncio.wait_for(cli.communicate(), 120)
                    if cli.returncode != 0:
                        results[i].failures += 1
                        print(f"{client.name}: {err.decode(errors='replace')[-300:]}")
                    results[i].calls += 1
            t += step
    finally:
        for proc in procs:
            if proc is not None and proc.returncode is None:
                assert proc.stdin is not None
                proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()

        def stop() -> None:
            for server in servers:
                server.close()
            reactor.stop()

        reactor.call_from_thread(stop)
        serving.join(10)
        reactor.close()
    for result, endpoint in zip(results, endpoints, strict=True):
        result.fetches = sum(endpoint.generations.values())
        result.max_per_generation = max(endpoint.generations.values(), default=0)
    return sts.calls, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument(
        "--call-every", type=int, default=300, help="simulated seconds between API calls"
    )
    parser.add_argument(
        "--cli-every", type=int, default=7200, help="simulated seconds between CLI commands"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log.info = log.debug = lambda *a, **k: None

    moto = support.start_moto()
    outcomes = {}
    try:
        for name, session in CONFIGS.items():
            work = support.workdir("sdk")
            outcomes[name] = asyncio.run(simulate_day(session, args, moto.url, work))
            sts_calls, results = outcomes[name]
            print(f"{name}: STS {sts_calls} calls ({sts_calls / args.hours:.2f} per pod-hour)")
            for r in results:
                print(
                    f"  {r.name:48} calls {r.calls:4d} fetches {r.fetches:4d} max/generation {r.max_per_generation} failures {r.failures}"
                )
    finally:
        moto.stop()

    names = list(CONFIGS)
    ours_sts, ours = outcomes[names[0]]
    kiam_sts, kiam = outcomes[names[1]]
    rows = []
    for a, b in zip(ours, kiam, strict=True):
        per_call = "per command" if "CLI" in a.name else "per pod-hour"
        scale = a.calls if "CLI" in a.name else args.hours
        rows.append(
            [
                a.name,
                a.calls,
                f"{a.fetches} ({a.fetches / scale:.2f} {per_call})",
                a.max_per_generation,
                f"{b.fetches} ({b.fetches / scale:.2f} {per_call})",
                b.max_per_generation,
                f"{b.fetches / a.fetches:.1f}x" if a.fetches else "",
                a.failures + b.failures,
            ]
        )
    rows.append(
        [
            "**sidecar -> STS**",
            "",
            f"{ours_sts} ({ours_sts / args.hours:.2f} per pod-hour)",
            "",
            f"{kiam_sts} ({kiam_sts / args.hours:.2f} per pod-hour)",
            "",
            f"{kiam_sts / ours_sts:.1f}x",
            "",
        ]
    )
    table = support.markdown_table(
        [
            "client",
            "API calls",
            f"fetches, {names[0]}",
            "max fetches of one generation",
            f"fetches, {names[1]}",
            "max fetches of one generation",
            "kiam-like / sidecred",
            "failures",
        ],
        rows,
    )
    worst = max(r.max_per_generation for r in ours)
    sts_rate = ours_sts / args.hours
    summary = support.targets_table(
        [
            [
                "each client fetches at most once per refresh period (credentials generation)",
                f"at most {worst} fetch(es) of any one generation (kiam-like: {max(r.max_per_generation for r in kiam)})",
                worst <= 1,
            ],
            [
                f"STS <= {STS_PER_POD_HOUR_TARGET:g} calls per pod-hour with 1 h sessions",
                f"{sts_rate:.2f} per pod-hour ({ours_sts} in {args.hours:g} h; kiam-like {kiam_sts / args.hours:.2f})",
                sts_rate <= STS_PER_POD_HOUR_TARGET,
            ],
        ],
    )
    print("\n" + table + "\n\n" + summary)
    body = f"""
Setup: a simulated {args.hours:g} h day, stepped every {args.call_every} simulated seconds. Server side:
the sidecar's real `HttpServer`, `CredentialEndpoint` and `CredentialCache` (real refresh schedule)
on a simulated clock, with a stand-in STS issuing credentials that expire `session` seconds after
the simulated now; one loopback listener per client, one shared cache (one pod). Client side: real
SDKs in their own processes whose clock alone is simulated (`bench/sdk_clients`: botocore's
`RefreshableCredentials` time fetcher through `sitecustomize`, `Date.now` in Node). Long-running
clients resolve credentials as their signer does before each API call (one call per step); the
CLI runs `aws sts get-caller-identity` against a local moto as a new process every
{args.cli_every} simulated seconds. "Fetches" are 200 answers on that client's listener; a
"generation" is one set of credentials the sidecar held.

{table}

{summary}

Reading: with sidecred's 1 h sessions every response carries more than 15 minutes, so each
long-running SDK keeps what it fetched until its own threshold (15 min left for botocore, 5 min
for JS v3) and then picks up the newer credentials the sidecar already holds. With 15-minute
sessions (kiam-like) every credential arrives inside botocore's 15-minute advisory window,
so botocore refetches on every API call; a CLI command is a new process and fetches once either
way. The sidecar also calls STS {kiam_sts / ours_sts:.1f}x as often.

JS v3 refreshes in the background, and an earlier version of this benchmark counted two fetches
of one generation for it; that was the simulation, not the SDK or the sidecar's answers. Two
caches sit in front of `fromHttp`, both with a 5-minute threshold: the client's
`memoizeIdentityProvider` (`@smithy/core` 3.41.1, `dist-cjs/index.js` lines 271-326, with
`EXPIRATION_MS = 300_000` at line 274; wrapped around the provider by `@aws-sdk/core`'s
`normalizeCredentialProvider`, `dist-cjs/submodules/httpAuthSchemes/index.js` line 308) and the
provider chain's `memoizeChain` (`@aws-sdk/credential-provider-node` 3.972.98,
`dist-cjs/index.js` lines 21-77, threshold `credentialsTreatedAsExpired` at line 162). Inside
the window, `memoizeChain` returns the credentials it holds and starts a fetch it does not wait
for (`passiveLock`, lines 49-61); only credentials already past their `Expiration` are dropped
(lines 41-45) and fetched while the caller waits (`activeLock`, lines 63-71). A real application
makes its next call minutes later, when that background fetch has long finished, so each
generation is fetched once. The simulation made the next call a few milliseconds of real time
later, with the clock already 300 s on and past the old `Expiration`: the background fetch (the
first use also loads `@aws-sdk/credential-provider-http` lazily) was still in flight, so the
chain dropped the expired credentials and fetched again, the same generation twice. With the
clock held until that background fetch has arrived (`settle_background_fetch`), JS v3 fetches
each generation once, as botocore does. The sidecar's `Expiration` (RFC 3339, `Z`, whole
seconds) is parsed exactly (`parseRfc3339DateTime`, `@aws-sdk/credential-provider-http` 3.972.87
`dist-cjs/index.js` line 77) and plays no part.
"""
    support.write_section("sdk_economy", "3. SDK economy", "python3 bench/sdk_economy.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
