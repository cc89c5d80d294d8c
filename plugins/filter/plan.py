# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that turn inventory settings into the deployment planner's input (docs: one .yml per filter)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_inputs import (
    PlanInputError,
    hosts_plan_input,
    kubernetes_cpu_pods,
    plan_request,
)


def _plan_request(variables):
    try:
        return plan_request(dict(variables))
    except PlanInputError as error:
        raise AnsibleFilterError(str(error)) from None


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
    try:
        return hosts_plan_input(nodes, device)
    except PlanInputError as error:
        raise AnsibleFilterError(str(error)) from None


def _plan_cpu_pods(head, driver):
    try:
        return kubernetes_cpu_pods(dict(head), dict(driver))
    except PlanInputError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    def filters(self):
        return {"plan_request": _plan_request, "hosts_plan_input": _hosts_plan_input, "plan_cpu_pods": _plan_cpu_pods}
