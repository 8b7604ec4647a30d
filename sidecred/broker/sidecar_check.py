"""Does a pod run the sidecar the webhook builds for it in broker mode? (The webhook's definition.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecred.pods.canonical import check_sidecar
from sidecred.pods.refusal import Refusal
from sidecred.pods.settings import Settings

BROKER_SOURCE = "broker"


def broker_sidecar_problem(pod: Mapping[str, Any], config: Settings) -> str | None:
    """Why `pod` does not run exactly the canonical broker-mode sidecar, or None if it does.

    The same check admission makes (`pods.canonical.check_sidecar`): the
    `sidecred` container equal to the one the webhook would build for this pod
    and configuration, and no other container able to act as a sidecar.
    """
    if config.credential_source != BROKER_SOURCE:
        return f"the broker is configured with --credential-source {config.credential_source}"
    try:
        verdict = check_sidecar(pod, config)
    except Refusal as refusal:
        return refusal.message
    if verdict.problem is not None:
        return verdict.problem.message
    if not verdict.canonical:
        return "it has no sidecred container"
    return None
