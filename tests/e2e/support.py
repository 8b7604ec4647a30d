"""Shared pieces of the end-to-end tests: the examples, patched pods, and the app program."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from sidecred.pods.settings import Settings
from sidecred.webhook.check_cli import build_request, load_yaml_object, pod_from_object
from sidecred.webhook.decide import decide_mutation
from sidecred.webhook.mutate import apply_patch

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
ROLE_ARN = "arn:aws:iam::111122223333:role/shop-reader"
ACCOUNT = "111122223333"
STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# What the example image's `aws sts get-caller-identity` does, via the SDK default chain.
# Like AWS CLI v2 it honours AWS_REGION (botocore itself reads only AWS_DEFAULT_REGION).
WHOAMI = [
    sys.executable,
    "-c",
    "import boto3, json, os; s = boto3.Session(region_name=os.environ.get('AWS_REGION')); "
    "i = s.client('sts').get_caller_identity(); "
    "print(json.dumps({'Arn': i['Arn'], 'Provider': s.get_credentials().method}))",
]


def clean_env() -> dict[str, str]:
    """This process's env without SIDECRED_* and AWS_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SIDECRED_", "AWS_"))}


def environment(sts_url: str, workdir: Path) -> dict[str, str]:
    """The surroundings a pod here needs: STS is the emulator, no config from this machine."""
    config, credentials = workdir / "aws-config", workdir / "aws-credentials"
    config.touch()
    credentials.touch()
    return {
        "AWS_ENDPOINT_URL_STS": sts_url,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def patched_example(name: str, config: Settings) -> dict[str, Any]:
    """An example pod (or a workload's pod) after the mutating decision, as the API server stores it."""
    documents = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    workload = next(d for d in documents if d and d.get("kind") != "ServiceAccount")
    pod = pod_from_object(workload, name)
    namespace = load_yaml_object(str(EXAMPLES / "namespace-shop.yaml"), "namespace")
    decision = decide_mutation(build_request(pod, "shop"), namespace, config)
    assert decision.allowed, decision.message
    return apply_patch(pod, decision.patch or [])
