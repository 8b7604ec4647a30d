"""`sidecred fetch`: get this pod's credentials once and print them (credential_process JSON).

The serving process runs it at each refresh of each role (`--container C` for
container C's own role), so TLS, the STS or broker client and the projected
service-account token live only in this short-lived process. It is also a
debugging tool: run in the sidecar's env, it shows what the source answers.
Success: the AWS `credential_process` JSON on stdout, exit 0. Failure: one
JSON log line (`fetch_failed`, with the source's code and message) on
stderr, exit 1; a configuration error exits 2.
"""

from __future__ import annotations

import argparse
import sys

from sidecred.jsonlog import add_log_level_argument
from sidecred.sidecar import log
from sidecred.sidecar.config import ConfigError, SidecarConfig, load_config
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.wire import FETCH_FAILED_EVENT, process_output

EXIT_FAILED = 1
EXIT_CONFIG = 2


def fetch_credentials(config: SidecarConfig, container: str | None = None) -> Credentials:
    """One call to the configured source, for the pod's role or `container`'s own.

    `config` is the role's: `role_config` has put the container's ARN and session
    name in place; the broker is told which container's role is asked for.
    """
    if config.credential_source == "broker":
        from sidecred.sidecar.broker_client import fetch_from_broker

        return fetch_from_broker(config, container)
    from sidecred.sidecar.sources import build_source

    return build_source(config).fetch()


def role_config(config: SidecarConfig, container: str | None) -> SidecarConfig:
    """The settings for one role: the pod's, or `container`'s own; ConfigError if there is none."""
    if container is None:
        if not config.role_arn:
            raise ConfigError(
                "sidecred fetch: this pod has no pod-level role; "
                "use --container for a container's own role"
            )
        return config
    entry = config.container_role(container)
    if entry is None:
        raise ConfigError(f"sidecred fetch: container {container!r} has no role of its own")
    return config.replace(role_arn=entry.role_arn, session_name=config.session_name_of(entry))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sidecred fetch",
        description="Get this pod's AWS credentials once and print them in the "
        "credential_process JSON format (all settings from SIDECRED_* env).",
    )
    parser.add_argument("--container", help="the role of this container (its own role)")
    add_log_level_argument(parser)
    args = parser.parse_args(argv)
    log.set_level(args.log_level)
    container = args.container
    try:
        config = role_config(load_config(), container)
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    try:
        creds = fetch_credentials(config, container)
    except SourceError as exc:
        log.error(
            FETCH_FAILED_EVENT,
            role_arn=config.role_arn,
            code=exc.code,
            error=exc.message,
            refused=exc.refused,
        )
        return EXIT_FAILED
    sys.stdout.write(process_output(creds) + "\n")
    sys.stdout.flush()
    return 0
