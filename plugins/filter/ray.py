# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that size the Ray cluster from the plan and the ray_cluster role's settings (docs: one .yml per filter).
Their module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _layout(function):
    """``function`` of _ray_layout, its RayLayoutError raised as the filter's error."""
    return lazy("_ray_layout", function, ["RayLayoutError"])


def _ray_host_gpus(plan, host, is_head, num_gpus=None, head_num_gpus=None):
    return _layout("host_gpus")(plan, host, bool(is_head), num_gpus=num_gpus, head_num_gpus=head_num_gpus)


def _ray_hosts_expectations(node_gpus, num_cpus=None, expected_nodes=None, expected_gpus=None, expected_cpus=None):
    return _layout("hosts_gate_expectations")(
        list(node_gpus),
        num_cpus=num_cpus,
        expected_nodes=expected_nodes,
        expected_gpus=expected_gpus,
        expected_cpus=expected_cpus,
    )


def _kuberay_layout(user_layout, plan=None):
    return _layout("kuberay_layout")(user_layout, plan)


def _raycluster_settings(layout, settings):
    return _layout("raycluster_settings")(layout, dict(settings))


def _raycluster_worker_replicas(layout, live_cluster=None):
    return _layout("worker_group_replicas")(layout, live_cluster)


def _ray_auth_token(given, stored_b64="", fresh="", required=True):
    return lazy("_ray_auth", "cluster_token", ["RayAuthError"])(given, stored_b64, fresh, required=required)


class FilterModule:
    def filters(self):
        return {
            "ray_host_gpus": _ray_host_gpus,
            "ray_hosts_expectations": _ray_hosts_expectations,
            "kuberay_layout": _kuberay_layout,
            "raycluster_settings": _raycluster_settings,
            "raycluster_worker_replicas": _raycluster_worker_replicas,
            "port_clashes": _layout("port_clashes"),
            "ray_auth_token": _ray_auth_token,
        }
