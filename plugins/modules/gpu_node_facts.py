#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_node_facts
short_description: GPU facts of Kubernetes nodes from their labels and allocatable, gated on what vLLM needs
version_added: 0.1.0
description:
  - Reads the Node objects given in O(nodes) (what M(kubernetes.core.k8s_info) returns for C(kind=Node)) and returns
    one entry per Ready, schedulable node that advertises NVIDIA GPUs, in the shape the
    O(llmops.ray_vllm.deployment_plan#module:nodes) option takes, plus the driver and CUDA versions.
  - The GPU count is the device plugin's C(nvidia.com/gpu) in C(status.allocatable); the product, memory, driver and
    CUDA versions and MIG strategy come from the labels NVIDIA GPU feature discovery (run by the GPU operator) puts on
    each GPU node (C(nvidia.com/gpu.product), C(nvidia.com/gpu.memory), C(nvidia.com/cuda.driver-version.full) or
    C(nvidia.com/cuda.driver.major)/C(minor)/C(rev), C(nvidia.com/cuda.runtime-version.full) or
    C(nvidia.com/cuda.runtime.major)/C(minor), C(nvidia.com/mig.strategy)).
  - Fails, with every fact and the RV(problems) in the result, when no node advertises a GPU, when a node carries
    the GPU labels but no allocatable GPU (the device plugin is not running there), or when a GPU node's driver or
    CUDA version is older than O(min_driver_version) or O(min_cuda_version), unless O(fail_on_problems=false).
  - Nodes that are NotReady or cordoned are left out, with a warning; control-plane and CPU nodes are ignored.
  - Pure computation on its options; it contacts no cluster.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
options:
  nodes:
    description:
      - The Node objects, as the C(resources) list of M(kubernetes.core.k8s_info) with C(kind=Node) (the items of
        C(kubectl get nodes -o json)).
    type: list
    elements: dict
    required: true
  min_gpus:
    description: Fewest allocatable GPUs each GPU node must offer.
    type: int
    default: 1
  min_driver_version:
    description:
      - Oldest NVIDIA driver version accepted on a GPU node, for example V(580.65.06). Compared number by number.
      - Empty or omitted skips the check.
    type: str
  min_cuda_version:
    description:
      - Oldest CUDA version the GPU nodes' driver must support, for example V(13.0) (GFD's C(cuda.runtime) labels,
        the version C(nvidia-smi) prints in its header). Empty or omitted skips the check.
    type: str
  node_selector:
    description:
      - Labels a node must carry, all of them with these values, to count. Empty counts every node.
    type: dict
    default: {}
  fail_on_problems:
    description: Fail when RV(problems) is not empty. With V(false) the problems are only returned.
    type: bool
    default: true
notes:
  - The label names are those of NVIDIA GPU feature discovery (GFD) 0.8 and later, as the NVIDIA GPU operator
    deploys it.
seealso:
  - module: llmops.ray_vllm.accelerator_facts
  - module: llmops.ray_vllm.deployment_plan
  - name: NVIDIA GPU feature discovery
    description: The labels this module reads.
    link: https://github.com/NVIDIA/k8s-device-plugin/tree/main/docs/gpu-feature-discovery
"""

EXAMPLES = r"""
- name: Read the nodes
  kubernetes.core.k8s_info:
    kind: Node
  register: nodes

- name: Require a driver for CUDA 13 on every GPU node
  llmops.ray_vllm.gpu_node_facts:
    nodes: "{{ nodes.resources }}"
    min_driver_version: "580.65.06"
    min_cuda_version: "13.0"
  register: gpu_nodes

- name: Only the nodes of one pool
  llmops.ray_vllm.gpu_node_facts:
    nodes: "{{ nodes.resources }}"
    node_selector:
      node.kubernetes.io/instance-type: a100-80gb-x1
  register: gpu_nodes

- name: Plan on them
  llmops.ray_vllm.deployment_plan:
    platform: kubernetes
    nodes: "{{ gpu_nodes.plan_nodes }}"
    model_path: /models/DeepSeek-R1-Distill-Llama-70B
"""

RETURN = r"""
nodes:
  description: One entry per Ready, schedulable node with allocatable GPUs matching O(node_selector), sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
      sample: gpu-worker-1
    gpus:
      description: Allocatable C(nvidia.com/gpu).
      type: int
      sample: 1
    gpu_product:
      description: Label C(nvidia.com/gpu.product) (GFD writes spaces as dashes); null without it.
      type: str
      sample: NVIDIA-A100-SXM4-80GB
    gpu_memory_mib:
      description: Label C(nvidia.com/gpu.memory), the memory of one GPU in MiB; null without it.
      type: int
      sample: 81920
    cpus:
      description: Allocatable CPU in cores.
      type: float
      sample: 32.0
    memory_mib:
      description: Allocatable memory in MiB.
      type: int
      sample: 262044
    driver_version:
      description: NVIDIA driver version from the GFD labels; null without them.
      type: str
      sample: 580.95.05
    cuda_version:
      description: Newest CUDA version the driver supports, from the GFD labels; null without them.
      type: str
      sample: "13.0"
    mig_strategy:
      description: Label C(nvidia.com/mig.strategy) (V(none), V(single) or V(mixed)); null without it.
      type: str
      sample: single
plan_nodes:
  description:
    - RV(nodes) with only the keys O(llmops.ray_vllm.deployment_plan#module:nodes) accepts (C(name), C(gpus),
      C(gpu_product), C(gpu_memory_mib), C(cpus), C(memory_mib)), to pass to it as they are.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "gpu-worker-1", "gpus": 1, "gpu_product": "NVIDIA-A100-SXM4-80GB", "gpu_memory_mib": 81920,
            "cpus": 32.0, "memory_mib": 262044}]
gpu_count:
  description: Sum of RV(nodes[].gpus).
  returned: always
  type: int
  sample: 2
gpu_node_count:
  description: Number of RV(nodes).
  returned: always
  type: int
  sample: 2
gpu_products:
  description: The distinct GPU products of RV(nodes).
  returned: always
  type: list
  elements: str
  sample: [NVIDIA-A100-SXM4-80GB]
gpu_product:
  description: RV(gpu_products) joined by C( + ); null without GPU node.
  returned: always
  type: str
  sample: NVIDIA-A100-SXM4-80GB
gpu_memory_mib:
  description: Smallest RV(nodes[].gpu_memory_mib); null when unknown.
  returned: always
  type: int
  sample: 81920
driver_version:
  description: Oldest RV(nodes[].driver_version); null when unknown.
  returned: always
  type: str
  sample: 580.95.05
cuda_version:
  description: Oldest RV(nodes[].cuda_version); null when unknown.
  returned: always
  type: str
  sample: "13.0"
excluded:
  description: GPU nodes left out of RV(nodes), with the reason (not Ready, cordoned).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "gpu-worker-2", "reason": "not Ready"}]
problems:
  description: What is not met, each with what was seen, what is needed and the fix; empty when ready.
  returned: always
  type: list
  elements: str
  sample: []
ready:
  description: Whether RV(problems) is empty.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._accelerator_facts import gate_option_errors
from ansible_collections.llmops.ray_vllm.plugins.module_utils._gpu_node_facts import NodeFactsError, collect

ARGUMENT_SPEC = dict(
    nodes=dict(type="list", elements="dict", required=True),
    min_gpus=dict(type="int", default=1),
    min_driver_version=dict(type="str"),
    min_cuda_version=dict(type="str"),
    node_selector=dict(type="dict", default={}),
    fail_on_problems=dict(type="bool", default=True),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    for error in gate_option_errors(params):
        module.fail_json(msg=error)
    try:
        result = collect(
            params["nodes"],
            min_gpus=params["min_gpus"],
            min_driver_version=params["min_driver_version"],
            min_cuda_version=params["min_cuda_version"],
            node_selector=params["node_selector"],
        )
    except NodeFactsError as error:
        module.fail_json(msg=f"could not read the nodes: {error}")
    for warning in result.pop("warnings"):
        module.warn(warning)
    result.update(changed=False, ready=not result["problems"])
    if result["problems"] and params["fail_on_problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
