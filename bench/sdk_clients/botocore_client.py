"""A long-running botocore application for bench/sdk_economy.py.

For each line on stdin (a simulated Unix time) it sets the clock and resolves
its credentials the way botocore's signer does before every request
(`get_frozen_credentials()` on the session's credentials), then prints the
access key id it would sign with.
"""

import os
import sys

import botocore.session
from botocore.credentials import Credentials

session = botocore.session.get_session()
credentials: Credentials | None = None
for line in sys.stdin:
    os.environ["SIDECRED_BENCH_NOW"] = line.strip()
    if credentials is None:
        credentials = session.get_credentials()
    if credentials is None:
        sys.exit("botocore found no credentials")
    print(credentials.get_frozen_credentials().access_key, flush=True)
