# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Reach a Service through the Kubernetes API server's proxy, with the kubeconfig's credentials.

The kubernetes client resolves the kubeconfig (token, client certificate, exec plugin, in-cluster account); the
gates then make ordinary HTTPS requests with what it resolved, so their own HTTP code stays the same.
"""

from __future__ import annotations

import os
import traceback
from urllib.parse import quote

try:
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    KUBERNETES_IMPORT_ERROR = None
except ImportError:  # the module says what to install when `service` is used
    kube_client = kube_config = None
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()


class KubeProxyError(Exception):
    pass


def proxy_path(namespace, name, port=None):
    """The API path of a Service's proxy: /api/v1/namespaces/<ns>/services/<name>[:<port>]/proxy."""
    target = quote(name, safe="") + (":" + quote(str(port), safe="") if port not in (None, "") else "")
    return "/api/v1/namespaces/{}/services/{}/proxy".format(quote(namespace, safe=""), target)


def load_configuration(kubeconfig=None, context=None):
    """A kubernetes.client.Configuration from the kubeconfig (or the in-cluster account when there is none)."""
    if kube_config is None:
        raise KubeProxyError("the Python package 'kubernetes' is needed to use service")
    configuration = kube_client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    try:
        if kubeconfig or os.path.exists(path):
            kube_config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
        else:
            kube_config.load_incluster_config(client_configuration=configuration)
    except Exception as error:  # the client raises several types; all mean the same thing here
        raise KubeProxyError(
            "cannot load Kubernetes credentials from {}{}: {}".format(
                path, f" (context {context})" if context else "", error
            )
        ) from None
    return configuration


def endpoint(service, kubeconfig=None, context=None):
    """``{url, headers, ca_path, client_cert, client_key, validate_certs}`` for requests through the proxy."""
    configuration = load_configuration(kubeconfig, context)
    # The header the client itself would send (it runs the kubeconfig's token refresh first).
    bearer = configuration.auth_settings().get("BearerToken") or {}
    headers = {"Authorization": bearer["value"]} if bearer.get("value") else {}
    return dict(
        url=configuration.host.rstrip("/") + proxy_path(service["namespace"], service["name"], service.get("port")),
        headers=headers,
        ca_path=configuration.ssl_ca_cert or None,
        client_cert=configuration.cert_file or None,
        client_key=configuration.key_file or None,
        validate_certs=bool(configuration.verify_ssl),
    )
