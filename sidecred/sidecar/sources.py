"""The STS credential sources `sidecred fetch` calls: web-identity here, assume-role on demand.

`web-identity` is `sts:AssumeRoleWithWebIdentity` with the projected
service-account token, an unsigned call made with the standard library
(`sts_client.py`): no base credentials exist anywhere in the pod, and no SDK
is installed. The unsafe `assume-role` source needs botocore to sign; it is
imported only when configured (`assume_role.py`, an optional extra).
"""

from __future__ import annotations

import os

from sidecred.sidecar.config import SidecarConfig
from sidecred.sidecar.credentials import Credentials, SourceError
from sidecred.sidecar.projected_token import read_projected_token
from sidecred.sidecar.session_name import build_session_name
from sidecred.sidecar.sts_client import assume_role_with_web_identity
from sidecred.sidecar.sts_endpoint import resolve_region

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecred.sidecar.assume_role import AssumeRoleSource


class WebIdentitySource:
    """`sts:AssumeRoleWithWebIdentity` with the projected service-account token, unsigned."""

    def __init__(self, config: SidecarConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.role_arn = config.role_arn
        self.session_name = build_session_name(
            config.pod_namespace, config.pod_name, config.session_name
        )

    def fetch(self) -> Credentials:
        # Re-read every time: the kubelet rotates the projected token.
        token = read_projected_token(
            self.config.web_identity_token_file or "", "WebIdentityTokenUnreadable"
        )
        return assume_role_with_web_identity(
            self.env,
            resolve_region(self.env, self.config.region),
            self.role_arn,
            self.session_name,
            token,
            self.config.session_duration,
        )


def build_source(config: SidecarConfig) -> WebIdentitySource | AssumeRoleSource:
    if config.credential_source != "assume-role":
        return WebIdentitySource(config)
    try:
        from sidecred.sidecar.assume_role import AssumeRoleSource
    except ModuleNotFoundError as exc:
        raise SourceError(
            "AssumeRoleUnavailable",
            f"the assume-role source needs botocore ({exc.name!r} is not installed): install "
            "sidecred[assume-role] or use the -assume-role sidecar image",
        ) from None
    return AssumeRoleSource(config)
