# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that turn inventory settings into the deployment planner's input (docs: one .yml per filter). Their
module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _plan_request(variables):
    return lazy("_plan_inputs", "plan_request", ["PlanInputError"])(dict(variables))


def _hosts_plan_input(hosts, hostvars, device="auto"):
    hosts = list(hosts)
    nodes = []
    for position, host in enumerate(hosts):
        host_vars = hostvars[host]
        nodes.append(
            {
                "name": host,
                "is_head": position == 0,
                "cuda_check_facts": host_vars.get("cuda_check_facts"),
                "ray_cluster_num_gpus": host_vars.get("ray_cluster_num_gpus"),
                "ray_cluster_head_num_gpus": host_vars.get("ray_cluster_head_num_gpus"),
            }
        )
    return lazy("_plan_inputs", "hosts_plan_input", ["PlanInputError"])(nodes, device)


def _plan_cpu_pods(head, driver):
    return lazy("_plan_inputs", "kubernetes_cpu_pods", ["PlanInputError"])(dict(head), dict(driver))


class FilterModule:
    def filters(self):
        return {"plan_request": _plan_request, "hosts_plan_input": _hosts_plan_input, "plan_cpu_pods": _plan_cpu_pods}
