"""`sidecred fetch`: get this pod's credentials once and print them (credential_process JSON).

The serving process runs it at each refresh, so botocore and the projected
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


def fetch_credentials(config: SidecarConfig) -> Credentials:
    """One call to the configured source; botocore is imported only for the STS sources."""
    if config.credential_source == "broker":
        from sidecred.sidecar.broker_client import fetch_from_broker

        return fetch_from_broker(config)
    from sidecred.sidecar.sources import build_source

    return build_source(config).fetch()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sidecred fetch",
        description="Get this pod's AWS credentials once and print them in the "
        "credential_process JSON format (all settings from SIDECRED_* env).",
    )
    add_log_level_argument(parser)
    log.set_level(parser.parse_args(argv).log_level)
    try:
        config = load_config()
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    try:
        creds = fetch_credentials(config)
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
