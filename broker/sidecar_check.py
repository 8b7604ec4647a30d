"""Does a pod run sidecred's broker-mode sidecar for its role? (The webhook's definitions.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecred.sidecar.config import ENV_CREDENTIAL_SOURCE, ENV_ROLE_ARN
from sidecred.webhook.pod import Refusal, env_value, find_sidecar, q
from sidecred.webhook.validate import check_sidecars_match

BROKER_SOURCE = "broker"


def broker_sidecar_problem(pod: Mapping[str, Any], role_arn: str) -> str | None:
    """Why `pod` does not run the broker-mode sidecar for `role_arn`, or None if it does.

    Every container that looks like the sidecar must be for the pod's role (the
    webhook's forged-sidecar rule), and the `sidecred` container must use the
    broker source.
    """
    found = find_sidecar(pod)
    if found is None:
        return "it has no sidecred container"
    _, _, container = found
    source = env_value(container, ENV_CREDENTIAL_SOURCE)
    if source != BROKER_SOURCE:
        return f"its sidecar's {ENV_CREDENTIAL_SOURCE} is {q(source or '')}, not {q(BROKER_SOURCE)}"
    if env_value(container, ENV_ROLE_ARN) != role_arn:
        return f"its sidecar's {ENV_ROLE_ARN} is not the annotated role"
    try:
        check_sidecars_match(pod, role_arn)
    except Refusal as refusal:
        return refusal.message
    return None
