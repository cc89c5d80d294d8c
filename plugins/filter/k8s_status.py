# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that say what is wrong with Kubernetes objects a gate waited for (docs: one .yml per filter)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import (
    crash_looping_containers,
    crd_lookups_brief,
    crds_not_established,
    image_pull_errors,
    nodes_without_gpus,
    not_ready_node_lines,
    not_ready_pod_nodes,
    not_ready_pods,
    pod_condition_lines,
    restarted_container_lines,
)


class FilterModule:
    def filters(self):
        return {
            "not_ready_pods": not_ready_pods,
            "nodes_without_gpus": nodes_without_gpus,
            "pod_condition_lines": pod_condition_lines,
            "crds_not_established": crds_not_established,
            "crd_lookups_brief": crd_lookups_brief,
            "image_pull_errors": image_pull_errors,
            "crash_looping_containers": crash_looping_containers,
            "not_ready_pod_nodes": not_ready_pod_nodes,
            "not_ready_node_lines": not_ready_node_lines,
            "restarted_container_lines": restarted_container_lines,
        }
