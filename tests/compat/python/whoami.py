"""The boto3 client of the sidecred compatibility tests.

It relies on the default credential chain, exactly as an application in a
patched pod would, calls sts:GetCallerIdentity and prints the caller's ARN.
botocore reads the STS address from AWS_ENDPOINT_URL_STS itself.

    python whoami.py --version
    python whoami.py
"""

import sys

import boto3
import botocore
from botocore.exceptions import BotoCoreError, ClientError

if sys.argv[1:] == ["--version"]:
    print(botocore.__version__)
    sys.exit(0)

try:
    arn = boto3.client("sts").get_caller_identity()["Arn"]
except (BotoCoreError, ClientError) as exc:
    print(f"GetCallerIdentity: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
print(arn)
