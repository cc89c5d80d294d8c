# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Reach a Service through the Kubernetes API server's proxy, with the kubeconfig's credentials.

The kubernetes client resolves the kubeconfig (token, client certificate, exec plugin, in-cluster account); the
gates then make ordinary HTTPS requests with what it resolved, so their own HTTP code stays the same. A
:class:`Transport` carries what those requests need; :func:`module_transport` makes one from a module's ``service``,
``kubeconfig`` and ``context`` options, which it only reads.
"""

from __future__ import annotations

import json
import os
import traceback
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.urls import fetch_url, open_url


def kubernetes_client():
    """The kubernetes package's ``client`` and ``config`` modules, imported on first use: a gate that asks a URL
    directly then never pays for importing them (a third of a second on every call). Raises ImportError."""
    from kubernetes import client, config

    return client, config


class KubeProxyError(Exception):
    pass


def proxy_path(namespace, name, port=None, scheme=None):
    """The API path of a Service's proxy: /api/v1/namespaces/<ns>/services/[https:]<name>[:<port>]/proxy.

    ``scheme`` https makes the API server speak TLS to the pods (Kubernetes' ``<scheme>:<name>:<port>`` form of the
    service proxy's name); it does not verify their certificate, it only encrypts that hop."""
    if scheme not in (None, "", "http", "https"):
        raise KubeProxyError(f"service scheme must be http or https, not {scheme!r}")
    prefix = "https:" if scheme == "https" else ""
    target = prefix + quote(name, safe="") + (":" + quote(str(port), safe="") if port not in (None, "") else "")
    return "/api/v1/namespaces/{}/services/{}/proxy".format(quote(namespace, safe=""), target)


def load_configuration(kubeconfig=None, context=None):
    """A kubernetes.client.Configuration from the kubeconfig (or the in-cluster account when there is none)."""
    try:
        kube_client, kube_config = kubernetes_client()
    except ImportError:
        raise KubeProxyError("the Python package 'kubernetes' is needed to use service") from None
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
    settings = api_endpoint(kubeconfig, context)
    settings["url"] += proxy_path(service["namespace"], service["name"], service.get("port"), service.get("scheme"))
    return settings


def api_endpoint(kubeconfig=None, context=None):
    """``{url, headers, ca_path, client_cert, client_key, validate_certs}`` for requests to the API server itself."""
    configuration = load_configuration(kubeconfig, context)
    # The header the client itself would send (it runs the kubeconfig's token refresh first).
    bearer = configuration.auth_settings().get("BearerToken") or {}
    headers = {"Authorization": bearer["value"]} if bearer.get("value") else {}
    return dict(
        url=configuration.host.rstrip("/"),
        headers=headers,
        ca_path=configuration.ssl_ca_cert or None,
        client_cert=configuration.cert_file or None,
        client_key=configuration.key_file or None,
        validate_certs=bool(configuration.verify_ssl),
    )


class Transport:
    """Where requests go and how: a base URL, headers every request carries, and the TLS settings to use.

    Through the service proxy these are the API server's (its bearer token, its CA, a client certificate); for a
    plain URL only ``url`` and ``validate_certs`` are set.
    """

    def __init__(self, url, headers=None, validate_certs=True, ca_path=None, client_cert=None, client_key=None):
        self.url = url
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs
        self.ca_path, self.client_cert, self.client_key = ca_path, client_cert, client_key

    @property
    def tls(self):
        """The TLS files that are set, as open_url takes them (``ca_path``, ``client_cert``, ``client_key``)."""
        files = dict(ca_path=self.ca_path, client_cert=self.client_cert, client_key=self.client_key)
        return {key: value for key, value in files.items() if value}

    def with_headers(self, headers):
        """``headers`` with this transport's own added; the transport's win (the API server needs its token).

        A caller's ``Authorization`` (a Ray cluster's token) goes as ``X-Ray-Authorization``, which Ray's dashboard
        reads for requests through proxies: the API server authenticates with ``Authorization`` and removes it."""
        merged = dict(headers or {})
        ray_token = merged.pop("Authorization", None)
        if ray_token:
            merged["X-Ray-Authorization"] = ray_token
        merged.update(self.headers)
        return merged

    def fetch(self, module, url, headers=None, **kwargs):
        """``fetch_url(module, url, ...)`` with this transport's headers and TLS settings.

        fetch_url reads validate_certs and the client certificate from the module's parameters; it gets a view of
        the module with these instead, so the module's own parameters stay as the user gave them.
        """
        tls_params = dict(validate_certs=self.validate_certs, client_cert=self.client_cert, client_key=self.client_key)
        view = _ModuleWithParams(module, dict(module.params, **tls_params))
        return fetch_url(view, url, headers=self.with_headers(headers), ca_path=self.ca_path, **kwargs)

    def open_url(self, url, headers=None, **kwargs):
        """``open_url(url, ...)`` with this transport's headers and TLS files (for clients that take an opener)."""
        return open_url(url, headers=self.with_headers(headers), **dict(kwargs, **self.tls))


def api_request(transport, method, path, query=None, body=None, content_type="application/json", timeout=10):
    """``(status, decoded JSON answer)`` of one request to the API server at ``transport`` (api_endpoint's); an
    answer that is not JSON comes back as ``{"message": <its text>}``, a connection that fails as status 0."""
    url = transport.url + path + ("?" + urlencode(query) if query else "")
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        response = transport.open_url(
            url,
            method=method,
            data=None if body is None else json.dumps(body),
            timeout=timeout,
            headers=headers,
            validate_certs=transport.validate_certs,
        )
        status, text = response.getcode(), response.read()
    except HTTPError as error:
        status, text = error.code, error.read()
    except (URLError, OSError) as error:
        return 0, {"message": str(getattr(error, "reason", error))}
    try:
        return status, json.loads(text or b"{}")
    except ValueError:
        return status, {"message": text.decode("utf-8", errors="replace")[:500]}


class _ModuleWithParams:
    """A module whose ``params`` are replaced; everything else (tmpdir, fail_json ...) is the module's own."""

    def __init__(self, module, params):
        self._module = module
        self.params = params

    def __getattr__(self, name):
        return getattr(self._module, name)


def service_transport(service, kubeconfig=None, context=None):
    """The :class:`Transport` to a Service (``namespace``, ``name``, ``port``) through the API server's proxy."""
    return Transport(**endpoint(service, kubeconfig, context))


def module_transport(module, **failure):
    """The transport to the Service of the module's ``service``, ``kubeconfig`` and ``context`` options.

    Fails the module, with ``failure`` added to its result, when the kubernetes package or the credentials are
    missing.
    """
    try:
        kubernetes_client()
    except ImportError:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=traceback.format_exc(), **failure)
    params = module.params
    try:
        return service_transport(params["service"], params.get("kubeconfig"), params.get("context"))
    except KubeProxyError as error:
        module.fail_json(msg=str(error), **failure)
