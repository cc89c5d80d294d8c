# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that size the Ray cluster from the plan and the ray_cluster role's settings (docs: one .yml per filter)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_auth import RayAuthError, cluster_token
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_layout import (
    RayLayoutError,
    host_gpus,
    hosts_gate_expectations,
    kuberay_layout,
    port_clashes,
    raycluster_settings,
    worker_group_replicas,
)


def _raising_filter_errors(function):
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (RayLayoutError, RayAuthError) as error:
            raise AnsibleFilterError(str(error)) from None

    wrapped.__name__ = function.__name__
    wrapped.__doc__ = function.__doc__
    return wrapped


def _ray_host_gpus(plan, host, is_head, num_gpus=None, head_num_gpus=None):
    return host_gpus(plan, host, bool(is_head), num_gpus=num_gpus, head_num_gpus=head_num_gpus)


def _ray_hosts_expectations(node_gpus, num_cpus=None, expected_nodes=None, expected_gpus=None, expected_cpus=None):
    return hosts_gate_expectations(
        list(node_gpus),
        num_cpus=num_cpus,
        expected_nodes=expected_nodes,
        expected_gpus=expected_gpus,
        expected_cpus=expected_cpus,
    )


def _kuberay_layout(user_layout, plan=None):
    return kuberay_layout(user_layout, plan)


def _raycluster_settings(layout, settings):
    return raycluster_settings(layout, dict(settings))


def _raycluster_worker_replicas(layout, live_cluster=None):
    return worker_group_replicas(layout, live_cluster)


def _ray_auth_token(given, stored_b64="", fresh="", required=True):
    return cluster_token(given, stored_b64, fresh, required=required)


class FilterModule:
    def filters(self):
        return {
            "ray_host_gpus": _raising_filter_errors(_ray_host_gpus),
            "ray_hosts_expectations": _raising_filter_errors(_ray_hosts_expectations),
            "kuberay_layout": _raising_filter_errors(_kuberay_layout),
            "raycluster_settings": _raising_filter_errors(_raycluster_settings),
            "raycluster_worker_replicas": _raising_filter_errors(_raycluster_worker_replicas),
            "port_clashes": port_clashes,
            "ray_auth_token": _raising_filter_errors(_ray_auth_token),
        }
