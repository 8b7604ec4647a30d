"""The Kubernetes API client of sidecred's servers and tools."""

from __future__ import annotations

from kubernetes import client
from kubernetes import config as kube_config


class KubeConfigUnavailable(RuntimeError):
    """Neither in-cluster credentials nor a kubeconfig could be loaded."""


def load_core_api(kubeconfig: str | None) -> client.CoreV1Api:
    """The API client: --kubeconfig if given, else in-cluster, else the default kubeconfig."""
    configuration = client.Configuration()
    if kubeconfig:
        try:
            kube_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        except (kube_config.ConfigException, OSError, ValueError) as exc:
            raise KubeConfigUnavailable(f"cannot load --kubeconfig {kubeconfig}: {exc}") from None
    else:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException as in_cluster_error:
            try:
                kube_config.load_kube_config(client_configuration=configuration)
            except (kube_config.ConfigException, OSError, ValueError) as exc:
                raise KubeConfigUnavailable(
                    "no Kubernetes API configuration: not running in a cluster "
                    f"({in_cluster_error}) and no usable default kubeconfig ({exc}); "
                    "pass --kubeconfig"
                ) from None
    return client.CoreV1Api(client.ApiClient(configuration))
