"""helm uninstall's pre-delete hook: remove the release's webhook configurations first.

While they exist and no webhook answers, the API server refuses every request they
select (failurePolicy Fail). Deleting them before Helm deletes the Deployment leaves
no such window. Reads SIDECRED_WEBHOOK_CONFIGURATION (the name both configurations
carry); one already gone is fine. The pod's service account authenticates in the
cluster; a kubeconfig (KUBECONFIG) is used when there is one.
"""

import json
import os
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

name = os.environ["SIDECRED_WEBHOOK_CONFIGURATION"]
try:
    config.load_config()
except config.ConfigException as exc:
    sys.exit(f"sidecred uninstall: no Kubernetes credentials: {exc}")
api = client.AdmissionregistrationV1Api()
# Mutating first: a pod created in between is then refused by validation (no sidecar),
# never admitted without one.
steps = (
    ("MutatingWebhookConfiguration", api.delete_mutating_webhook_configuration),
    ("ValidatingWebhookConfiguration", api.delete_validating_webhook_configuration),
)
for kind, delete in steps:
    try:
        delete(name)
        result = "deleted"
    except ApiException as exc:
        if exc.status != 404:
            sys.exit(f"sidecred uninstall: cannot delete {kind} {name}: {exc.status} {exc.reason}")
        result = "already gone"
    print(json.dumps({"event": "webhook_configuration_removed", "kind": kind, "name": name,
                      "result": result}))  # fmt: skip
