"""Answers' shapes the tests check against, written from the documented contracts
(README.md, SECURITY.md), not from the code."""

# The container credential endpoint's JSON (the sidecar's GET and the broker's POST
# /v1/credentials), in this order.
CREDENTIAL_KEYS = ["AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId", "RoleArn"]
