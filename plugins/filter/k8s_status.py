# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that say what is wrong with Kubernetes objects a gate waited for (docs: one .yml per filter). Their
module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy

WAITER_FILTERS = (
    "not_ready_pods",
    "nodes_without_gpus",
    "pod_condition_lines",
    "crds_not_established",
    "crd_lookups_brief",
    "image_pull_errors",
    "crash_looping_containers",
    "not_ready_pod_nodes",
    "not_ready_node_lines",
    "restarted_container_lines",
)


class FilterModule:
    def filters(self):
        return {name: lazy("_waiter", name) for name in WAITER_FILTERS}
