#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: accelerator_facts
short_description: Read a host's NVIDIA GPUs and CPU, and gate on what vLLM needs
version_added: 0.1.0
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) for the GPUs, and plain C(nvidia-smi) for the
    newest CUDA version the driver supports (its header; C(nvidia-smi -q -x) when the header lacks it).
  - Always reads the CPU (logical cores, model, the flags vLLM's CPU backend cares about) from O(proc_cpuinfo), the
    memory from O(proc_meminfo), and the NUMA node count from C(/sys/devices/system/node/online).
  - Then checks the facts against O(min_gpus), O(allow_cpu), O(min_driver_version) and O(min_cuda_version). When one
    is not met the module fails, with every fact and the RV(problems) in the result.
  - A host without GPU passes, in RV(mode=cpu), when O(allow_cpu=true) or O(min_gpus=0) (a node that needs no GPU,
    like the head of a GPU cluster). The driver and CUDA checks only apply to hosts with GPUs.
  - Warns, without failing, about GPUs with MIG enabled, a mix of GPU models, and an C(nvidia-smi) that is installed
    but fails on a host allowed to run without GPU.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
  - llmops.ray_vllm.wait
options:
  nvidia_smi:
    description:
      - Path of C(nvidia-smi). When omitted it is looked up on E(PATH) and in the usual system directories.
      - When it is not found the host has no usable NVIDIA GPU.
    type: path
  proc_cpuinfo:
    description: File to read the CPU from; another path serves tests.
    type: path
    default: /proc/cpuinfo
  proc_meminfo:
    description: File to read the memory from; another path serves tests.
    type: path
    default: /proc/meminfo
  min_gpus:
    description:
      - Fewest GPUs C(nvidia-smi) must list.
      - With V(0), a host without GPU passes in RV(mode=cpu).
    type: int
    default: 0
  allow_cpu:
    description:
      - Accept a host without NVIDIA GPU, whatever O(min_gpus) says, so vLLM serves on its CPU.
      - A host that has GPUs is still checked against O(min_gpus).
    type: bool
    default: false
  min_driver_version:
    description:
      - Oldest NVIDIA driver version accepted, for example V(535.104.05). Compared number by number.
      - Empty or omitted skips the check.
    type: str
  min_cuda_version:
    description:
      - Oldest CUDA version the driver must support, for example V(12.1), as printed in the C(nvidia-smi) header.
      - That is the newest CUDA the driver can run, not an installed toolkit. Empty or omitted skips the check.
    type: str
notes:
  - C(nvidia-smi) lists every GPU of the host whatever E(CUDA_VISIBLE_DEVICES) says.
seealso:
  - name: nvidia-smi documentation
    description: The query fields this module reads.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Require 8 GPUs with a recent enough driver
  llmops.ray_vllm.accelerator_facts:
    min_gpus: 8
    min_driver_version: "550.54.14"
    min_cuda_version: "12.4"
  register: accel

- name: Serve on CPU where there is no GPU
  llmops.ray_vllm.accelerator_facts:
    allow_cpu: true
  register: accel

- name: Use the facts
  ansible.builtin.debug:
    msg: >-
      {{ accel.gpu_count }} x {{ accel.gpu_product }} ({{ accel.gpu_memory_mib }} MiB each)
      or CPU with bf16 {{ accel.cpu.bf16_supported }}

- name: Wait for the driver after installing the GPU operator
  llmops.ray_vllm.accelerator_facts:
    min_gpus: 1
    wait: true
    timeout: 600
    interval: 15
"""

RETURN = r"""
ready:
  description: Whether every expectation was met.
  returned: always
  type: bool
  sample: true
mode:
  description: V(gpu) when C(nvidia-smi) listed at least one GPU, V(cpu) otherwise.
  returned: always
  type: str
  sample: gpu
gpus:
  description: One entry per GPU listed by C(nvidia-smi); values it reports as unavailable are null.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: GPU index as C(nvidia-smi) numbers it.
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA H200
    uuid:
      description: GPU UUID.
      type: str
      sample: GPU-3dc8a3a5-5b89-fb6c-ccd4-ab882739510f
    pci_bus_id:
      description: PCI bus id.
      type: str
      sample: "00000000:00:06.0"
    memory_total_mib:
      description: Total memory in MiB.
      type: int
      sample: 143771
    memory_used_mib:
      description: Used memory in MiB.
      type: int
      sample: 0
    memory_free_mib:
      description: Free memory in MiB.
      type: int
      sample: 143156
    driver_version:
      description: Driver version.
      type: str
      sample: 580.159.04
    compute_capability:
      description: CUDA compute capability.
      type: str
      sample: "9.0"
    mig_mode:
      description: Current MIG mode, V(Enabled) or V(Disabled); null on GPUs without MIG.
      type: str
      sample: Disabled
    persistence_mode:
      description: Persistence mode, V(Enabled) or V(Disabled).
      type: str
      sample: Enabled
gpu_count:
  description: Number of GPUs listed.
  returned: always
  type: int
  sample: 1
gpu_product:
  description:
    - The GPUs' product name; the distinct names joined by C( + ) on a host that mixes models; null without GPU.
  returned: always
  type: str
  sample: NVIDIA H200
gpu_memory_mib:
  description: Smallest total memory of the GPUs in MiB; null without GPU.
  returned: always
  type: int
  sample: 143771
driver_version:
  description: NVIDIA driver version; null without GPU.
  returned: always
  type: str
  sample: 580.159.04
cuda_version:
  description: Newest CUDA version the driver supports, from the C(nvidia-smi) header; null without GPU.
  returned: always
  type: str
  sample: "13.0"
cpu:
  description: The host's CPU and memory.
  returned: always
  type: dict
  contains:
    logical_cores:
      description: Logical CPUs listed in O(proc_cpuinfo).
      type: int
      sample: 2
    model_name:
      description: CPU model name; null where the kernel does not give one (some Arm CPUs).
      type: str
      sample: AMD EPYC
    vendor_id:
      description: CPU vendor id; null where the kernel does not give one.
      type: str
      sample: AuthenticAMD
    flags:
      description: Whether the CPU has each of C(avx2), C(avx512f), C(avx512_bf16), C(amx_bf16) and C(amx_tile).
      type: dict
      sample: {"avx2": true, "avx512f": false, "avx512_bf16": false, "amx_bf16": false, "amx_tile": false}
    bf16_supported:
      description: Whether the CPU computes bfloat16 natively (C(avx512_bf16) or C(amx_bf16)).
      type: bool
      sample: false
    memory_total_mib:
      description: C(MemTotal) in MiB.
      type: int
      sample: 24105
    memory_available_mib:
      description: C(MemAvailable) in MiB.
      type: int
      sample: 22467
    numa_nodes:
      description: Online NUMA nodes; null when the kernel does not say.
      type: int
      sample: 1
memory_mib:
  description: Total memory of the host in MiB, as RV(cpu.memory_total_mib).
  returned: always
  type: int
  sample: 24105
problems:
  description: The expectations not met, each with what was seen and what to do; empty when ready.
  returned: always
  type: list
  elements: str
  sample: []
attempts:
  description: Number of looks taken.
  returned: always
  type: int
  sample: 1
elapsed_s:
  description: Seconds spent looking.
  returned: always
  type: float
  sample: 0.2
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._accelerator_facts import (
    check_expectations,
    collect,
    gate_option_errors,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import with_wait
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import poll

ARGUMENT_SPEC = with_wait(
    dict(
        nvidia_smi=dict(type="path"),
        proc_cpuinfo=dict(type="path", default="/proc/cpuinfo"),
        proc_meminfo=dict(type="path", default="/proc/meminfo"),
        min_gpus=dict(type="int", default=0),
        allow_cpu=dict(type="bool", default=False),
        min_driver_version=dict(type="str"),
        min_cuda_version=dict(type="str"),
    )
)


def find_nvidia_smi(module):
    given = module.params["nvidia_smi"]
    if given:
        return given if os.path.isfile(given) and os.access(given, os.X_OK) else None
    return module.get_bin_path("nvidia-smi", required=False)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    for error in gate_option_errors(params):
        module.fail_json(msg=error)
    host = socket.gethostname()
    nvidia_smi = find_nvidia_smi(module)
    warnings = []

    def observe():
        try:
            facts, absent_reason = collect(
                module, nvidia_smi, params["nvidia_smi"], params["proc_cpuinfo"], params["proc_meminfo"]
            )
        except ValueError as error:
            module.fail_json(
                msg=f"could not parse the output of {nvidia_smi} on {host}: {error}. "
                "Is it an NVIDIA driver's nvidia-smi?"
            )
        except OSError as error:
            module.fail_json(msg=f"could not read the CPU or memory facts on {host}: {error}")
        mode, problems, found_warnings = check_expectations(
            facts,
            host=host,
            min_gpus=params["min_gpus"],
            allow_cpu=params["allow_cpu"],
            min_driver_version=params["min_driver_version"],
            min_cuda_version=params["min_cuda_version"],
            gpu_absent_reason=absent_reason,
        )
        warnings[:] = found_warnings
        facts.update(mode=mode, problems=problems, ready=not problems)
        return facts

    timeout = params["timeout"] if params["wait"] else 0
    result, attempts, elapsed = poll(observe, lambda facts: facts["ready"], timeout, params["interval"])
    for warning in warnings:
        module.warn(warning)
    result.update(changed=False, attempts=attempts, elapsed_s=round(elapsed, 2))
    if not result["ready"]:
        msg = "; ".join(result["problems"])
        if params["wait"]:
            msg = f"After {attempts} attempts over {elapsed:.0f}s: {msg}"
        module.fail_json(msg=msg, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
