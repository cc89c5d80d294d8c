# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Argument-spec fragments shared by the collection's modules, mirrored by doc fragments."""

from __future__ import annotations

# Mirrored by plugins/doc_fragments/wait.py.
WAIT_ARGUMENT_SPEC = dict(
    wait=dict(type="bool", default=False),
    timeout=dict(type="int", default=300),
    interval=dict(type="int", default=5),
)


# The value rules of the wait options (plugins/module_utils/_value_rules.py), checked by the modules that take them.
WAIT_VALUE_RULES = dict(
    timeout={"int": {"min": 0}},
    interval={"int": {"min": 1}},
)


def with_wait(spec):
    """Return a copy of ``spec`` extended with the wait options."""
    merged = dict(spec)
    merged.update(WAIT_ARGUMENT_SPEC)
    return merged


# Mirrored by plugins/doc_fragments/kubernetes_service.py.
KUBERNETES_SERVICE_ARGUMENT_SPEC = dict(
    service=dict(
        type="dict",
        options=dict(
            namespace=dict(type="str", required=True),
            name=dict(type="str", required=True),
            port=dict(type="str"),
            scheme=dict(type="str", default="http", choices=["http", "https"]),
        ),
    ),
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
)


def with_kubernetes_service(spec):
    """Return a copy of ``spec`` extended with the options that reach a server through the service proxy."""
    merged = dict(spec)
    merged.update(KUBERNETES_SERVICE_ARGUMENT_SPEC)
    return merged


# Mirrored by plugins/doc_fragments/ray_dashboard.py: the Ray dashboard a Serve module reaches (or, with the
# kubernetes_service options, the Service in front of it).
RAY_DASHBOARD_ARGUMENT_SPEC = dict(
    dashboard_url=dict(type="str"),
    token=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=True),
)


def with_ray_dashboard(spec):
    """Return a copy of ``spec`` extended with the options that reach a Ray dashboard, directly or by its Service."""
    merged = with_kubernetes_service(spec)
    merged.update(RAY_DASHBOARD_ARGUMENT_SPEC)
    return merged
