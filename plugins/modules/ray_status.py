#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ray_status
short_description: Read a Ray cluster's status and gate on its nodes, GPUs and CPUs
version_added: 0.1.0
description:
  - Reads the status of a Ray cluster from exactly one source, parses it into facts (nodes, resources, pending
    demands, per-node usage) and checks them against the expected node, GPU and CPU counts.
  - "Sources: O(address) runs the local C(ray status) CLI against the cluster's GCS; O(dashboard_url) asks the
    Ray dashboard's HTTP API (C(/api/cluster_status?format=1) for the status and C(/api/v0/nodes) for per-node
    state); O(status_text) parses C(ray status) output captured elsewhere, for example by
    M(kubernetes.core.k8s_exec) in the head pod."
  - Understands every C(ray status) layout printed from Ray 2.4 to Ray 2.60 (C(Healthy:) or C(Active:)/C(Idle:),
    C(Usage:) or C(Total Usage:), C(Demands:)/C(Total Demands:)/C(Pending Demands:), C(Total Constraints:)/C(From
    request_resources:), placement group reservations, memory in B to TiB, the per-node blocks of C(ray status -v),
    log lines before the report, and C(No cluster status.)).
  - When an expectation is not met the module fails with C(ready=false), all parsed facts, and a message that
    says what was expected, what was seen, the likely cause and what to check.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
  - llmops.ray_vllm.wait
  - llmops.ray_vllm.kubernetes_service
options:
  address:
    description:
      - GCS address of the cluster, C(host:port) (the head's C(--port), default 6379), for C(ray status --address).
      - Needs a C(ray) executable of the cluster's Ray version on the host running the module, see O(ray_binary).
      - Exactly one of O(address), O(dashboard_url), O(status_text) and O(service) is required.
    type: str
  dashboard_url:
    description:
      - Root URL of the Ray dashboard, for example C(http://ray-head:8265).
      - Exactly one of O(address), O(dashboard_url), O(status_text) and O(service) is required.
    type: str
  status_text:
    description:
      - Output of C(ray status) (or C(ray status -v)) captured elsewhere. Log lines before the report are ignored.
      - The text cannot change, so the module looks once even with O(wait=true).
      - Exactly one of O(address), O(dashboard_url), O(status_text) and O(service) is required.
    type: str
  ray_binary:
    description:
      - Path of the C(ray) executable used with O(address).
      - Default is C(ray) found on E(PATH) or next to the Python interpreter running the module.
    type: path
    aliases: [ray_path]
  verbose:
    description:
      - With O(address), run C(ray status -v) to also get per-node usage in RV(node_details).
    type: bool
    default: true
  token:
    description:
      - Token of a Ray cluster with token authentication (the output of C(ray get-auth-token) on the head).
      - "With O(dashboard_url) it is sent as C(Authorization: Bearer <token>); through O(service) as
        C(X-Ray-Authorization), since the API server keeps C(Authorization) for itself; with O(address) it is given
        to C(ray status) in E(RAY_AUTH_TOKEN) with E(RAY_AUTH_MODE=token)."
    type: str
  validate_certs:
    description:
      - Verify the dashboard's TLS certificate when O(dashboard_url) is C(https).
    type: bool
    default: true
  request_timeout:
    description:
      - Seconds to wait for one answer of the dashboard with O(dashboard_url).
      - With O(address), seconds to wait for the TCP connection to the GCS port that is tried before running
        C(ray status), so that a head that is not listening is reported at once (C(ray status) itself retries
        for about 40 seconds).
    type: int
    default: 30
  expected_nodes:
    description:
      - Minimum number of alive nodes (active plus idle, the head included).
    type: int
  expected_gpus:
    description:
      - Minimum number of GPUs (the Ray C(GPU) resource) summed over the alive nodes.
    type: float
  expected_cpus:
    description:
      - Minimum number of CPUs (the Ray C(CPU) resource) summed over the alive nodes.
    type: float
  fail_on_failures:
    description:
      - Fail at once, without waiting further, when Ray lists a recent node failure or when a node seen alive
        earlier in this wait is gone.
    type: bool
    default: false
notes:
  - The report of C(ray status) comes from the head's autoscaler monitor, which refreshes it every few seconds,
    so a node that just joined or died may show a little later.
  - With O(dashboard_url) or O(service), a node the GCS lists C(ALIVE) in C(/api/v0/nodes) but the report does not
    list yet (it registered a moment ago) counts as alive and idle, and its resources count in the totals, so the
    gate passes as soon as every node has registered. The node list never lowers what the report says.
  - Nodes that died long ago stay C(DEAD) in the dashboard's node list; they do not make the gate fail, but they
    are named in the message when nodes are missing.
seealso:
  - name: Ray cluster status CLI
    description: The C(ray status) command.
    link: https://docs.ray.io/en/latest/cluster/cli.html#ray-status
"""

EXAMPLES = r"""
- name: Wait for a KubeRay cluster, through the API server's proxy to the head Service's dashboard port
  llmops.ray_vllm.ray_status:
    service:
      namespace: llm
      name: llm-raycluster-head-svc
      port: "8265"
    kubeconfig: ~/.kube/config
    expected_nodes: 3
    expected_gpus: 2
    wait: true

- name: Wait until the head and both GPU workers have joined (local ray CLI)
  llmops.ray_vllm.ray_status:
    address: "{{ ray_head_ip }}:6379"
    expected_nodes: 3
    expected_gpus: 16
    wait: true
    timeout: 600

- name: Check through the dashboard of a token-protected cluster, showing progress in the play
  llmops.ray_vllm.ray_status:
    dashboard_url: "http://{{ ray_head_ip }}:8265"
    token: "{{ ray_auth_token }}"
    expected_nodes: 2
    expected_gpus: 8
  register: ray_cluster
  until: ray_cluster is not failed
  retries: 60
  delay: 10

- name: Run ray status in the KubeRay head pod
  kubernetes.core.k8s_exec:
    namespace: llm
    pod: "{{ ray_head_pod }}"
    command: ray status -v
  register: head_status
  changed_when: false

- name: Gate on that output
  llmops.ray_vllm.ray_status:
    status_text: "{{ head_status.stdout }}"
    expected_nodes: 3
    expected_gpus: 16
    fail_on_failures: true
"""

RETURN = r"""
ready:
  description: Whether every expectation was met.
  returned: always
  type: bool
  sample: true
problems:
  description: One sentence per unmet expectation, with what was expected, what was seen and the likely cause.
  returned: always
  type: list
  elements: str
  sample: ["1/2 nodes alive; pending demand {'GPU': 1.0}: a worker has not joined; check the worker pod/host ..."]
nodes:
  description: Node counts from the report.
  returned: always
  type: dict
  contains:
    active:
      description: Nodes listed under C(Active:) (C(Healthy:) in Ray 2.4 to 2.5).
      type: int
      returned: always
    idle:
      description: Nodes listed under C(Idle:) (autoscaler v2 layout only).
      type: int
      returned: always
    alive:
      description: O(expected_nodes) is compared with this, RV(nodes.active) plus RV(nodes.idle).
      type: int
      returned: always
    pending:
      description: Nodes the autoscaler is still launching.
      type: int
      returned: always
    failed:
      description: Entries under C(Recent failures:).
      type: int
      returned: always
  sample: {"active": 2, "idle": 0, "alive": 2, "pending": 0, "failed": 0}
node_types:
  description: Alive nodes by the node type Ray prints (C(node_<id>) on manual clusters, the group name with KubeRay).
  returned: always
  type: dict
  sample: {"node_75f377dec0b8f14985e3a1ae669ca93bfe01dfb24448f83af8ba57e6": {"active": 1, "idle": 0}}
resources:
  description:
    - Cluster-wide resources keyed by Ray resource name (C(CPU), C(GPU), C(memory), C(object_store_memory),
      C(accelerator_type:H200), custom resources). Memory is in bytes.
    - C(placement_group_used) and C(placement_group_reserved) are present when part of the resource is reserved
      by placement groups; C(used) then counts what is really used, as Ray prints it.
  returned: always
  type: dict
  sample: {"CPU": {"used": 0.0, "total": 12.0}, "GPU": {"used": 1.0, "total": 1.0, "placement_group_used": 1.0,
           "placement_group_reserved": 1.0}, "memory": {"used": 0.0, "total": 187871940444.16}}
demands:
  description: Pending resource demands, one line each as Ray prints them.
  returned: always
  type: list
  elements: str
  sample: ["{'GPU': 1.0} * 2 (PACK): 1+ pending placement groups"]
demand_details:
  description: RV(demands) parsed. Each has C(bundles) (list of C(resources) and C(count)), C(strategy),
    C(count) and C(kind) (C(task_or_actor), C(placement_group) or C(request_resources)).
  returned: always
  type: list
  elements: dict
  sample: [{"bundles": [{"resources": {"GPU": 1.0}, "count": 2}], "strategy": "PACK", "count": 1,
            "kind": "placement_group"}]
constraints:
  description: Lines under C(From request_resources:) or C(Total Constraints:).
  returned: always
  type: list
  elements: str
  sample: []
pending_nodes:
  description: Lines under C(Pending:).
  returned: always
  type: list
  elements: str
  sample: []
failures:
  description: Lines under C(Recent failures:).
  returned: always
  type: list
  elements: str
  sample: ["node_ab12: NodeTerminated (ip: 10.0.0.2)"]
node_details:
  description:
    - Per-node facts when the source gives them (C(ray status -v) text, and the dashboard's C(/api/v0/nodes)).
    - Each has C(node_id), C(state) (C(ALIVE) or C(DEAD)), C(node_ip), C(is_head_node), C(node_type), C(idle_ms),
      C(resources) (same shape as RV(resources); C(used) is null when only the dashboard's totals are known),
      C(labels) and C(state_message). Facts the source does not give are null or empty.
  returned: always
  type: list
  elements: dict
  sample: [{"node_id": "75f377dec0b8f14985e3a1ae669ca93bfe01dfb24448f83af8ba57e6", "state": "ALIVE",
            "node_ip": "10.0.0.2", "is_head_node": false, "node_type": null, "idle_ms": null,
            "resources": {"GPU": {"used": 0.0, "total": 1.0}}, "labels": {"ray.io/accelerator-type": "H200"},
            "state_message": null}]
vanished_nodes:
  description: Nodes seen alive in an earlier poll of this run and not since (same shape as RV(node_details)).
  returned: always
  type: list
  elements: dict
  sample: []
status_time:
  description: Time in the report's C(Autoscaler status) header, as Ray printed it.
  returned: always
  type: str
  sample: "2026-11-28 10:04:14.959152"
message:
  description: What Ray printed instead of a report, such as C(No cluster status. ...).
  returned: always
  type: str
  sample: null
source:
  description: Which source was read, C(address), C(dashboard_url) or C(status_text).
  returned: always
  type: str
  sample: address
source_error:
  description:
    - Why the source could not be read, or null. C(kind) is one of C(connection), C(auth), C(version_mismatch),
      C(cli), C(ray_missing), C(http_unreachable), C(http_unauthorized), C(http_status), C(http_answer);
      C(where) is the address or URL; C(detail) the telling line of the error; C(rc) the exit code of
      C(ray status) when it ran.
  returned: always
  type: dict
  sample: {"kind": "connection", "where": "10.0.0.1:6379", "detail": "Ray cluster is not found at 10.0.0.1:6379"}
raw:
  description: The text that was parsed (the CLI's output, also its stderr when it failed, or the dashboard's text).
  returned: always
  type: str
  sample: "======== Autoscaler status: 2026-11-28 10:04:14.959152 ========\nNode status\n..."
attempts:
  description: How many times the status was read.
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds spent polling.
  returned: always
  type: float
  sample: 0.0
"""

import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import (
    WAIT_VALUE_RULES,
    with_kubernetes_service,
    with_wait,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_sources import run_gate
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

ARGUMENT_SPEC = with_kubernetes_service(
    with_wait(
        dict(
            address=dict(type="str"),
            dashboard_url=dict(type="str"),
            status_text=dict(type="str"),
            ray_binary=dict(type="path", aliases=["ray_path"]),
            verbose=dict(type="bool", default=True),
            token=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            request_timeout=dict(type="int", default=30),
            expected_nodes=dict(type="int"),
            expected_gpus=dict(type="float"),
            expected_cpus=dict(type="float"),
            fail_on_failures=dict(type="bool", default=False),
        )
    )
)
SOURCES = ["address", "dashboard_url", "status_text", "service"]

# What the spec cannot say (plugins/module_utils/_value_rules.py): checked before anything is asked.
VALUE_RULES = dict(
    WAIT_VALUE_RULES,
    address="host_port",
    dashboard_url="http_url",
    expected_nodes={"int": {"min": 1}},
    expected_gpus={"number": {"min": 0}},
    expected_cpus={"number": {"min": 0}},
    request_timeout={"int": {"min": 1}},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[SOURCES],
        required_one_of=[SOURCES],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, VALUE_RULES)
    result = run_gate(module, interpreter_dir=os.path.dirname(sys.executable))
    if result["ready"]:
        module.exit_json(changed=False, **result)
    module.fail_json(changed=False, **result)


if __name__ == "__main__":
    main()
