#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ray_node
short_description: Run one Ray node (head or worker) on this host, idempotently
version_added: 0.1.0
description:
  - Starts, restarts or stops one Ray node with C(ray start), either supervised by systemd
    (C(ray start --block) in a unit that restarts on failure) or as detached background processes.
  - A node is found by its Ray temp dir, so several nodes (a head and a worker) can share one machine.
  - A running node whose settings are unchanged is left alone; a dead node is started again;
    a node whose settings changed is restarted.
  - Before a head starts, the GCS port must be free; a port held by something else fails with its number.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the node's command line, environment and running state before and after.
options:
  name:
    description: Name of the node, used in the systemd unit name (C(ray-<name>.service)) and messages.
    type: str
    required: true
  role:
    description: Whether this node is the head or a worker.
    type: str
    choices: [head, worker]
    required: true
  state:
    description: C(started) keeps the node running; C(restarted) restarts it; C(stopped) stops it.
    type: str
    choices: [started, stopped, restarted]
    default: started
  supervisor:
    description: C(systemd) writes and runs a unit; C(background) runs detached processes (localhost, containers).
    type: str
    choices: [systemd, background]
    default: background
  ray_path:
    description: The C(ray) executable of the runtime virtualenv.
    type: path
    required: true
  temp_dir:
    description: Ray's temp dir for this node; unique per node on one machine.
    type: path
    required: true
  head_address:
    description: GCS address (C(host:port)) of the head. Required for a worker.
    type: str
  node_ip:
    description: Address other nodes reach this node on. Exported as C(VLLM_HOST_IP) too.
    type: str
  port:
    description: GCS port of a head.
    type: int
    default: 6379
  dashboard_host:
    description: Address a head's dashboard and Jobs API listen on.
    type: str
    default: 127.0.0.1
  dashboard_port:
    description: Port of a head's dashboard and Jobs API.
    type: int
    default: 8265
  dashboard_agent_listen_port:
    description:
      - HTTP port of the node's dashboard agent, which takes the Jobs API's submissions on a head.
      - Omitted uses Ray's default (52365). Give each head on one machine its own, or its Jobs API answers
        "No available agent to submit job".
    type: int
  num_cpus:
    description: CPUs the node offers Ray; omitted lets Ray count them.
    type: int
  num_gpus:
    description: GPUs the node offers Ray; omitted lets Ray count them.
    type: int
  object_store_memory:
    description: Bytes of the object store; omitted lets Ray size it.
    type: int
  resources:
    description: Custom Ray resources of the node, name to quantity.
    type: dict
    default: {}
  env:
    description: Extra environment for the Ray processes (NCCL, GLOO interface variables ...).
    type: dict
    default: {}
  auth_mode:
    description:
      - Ray's token authentication for every process of the node (E(RAY_AUTH_MODE)). C(token) makes the GCS, the
        dashboard and the Jobs API require the cluster's token; Ray reads it from O(auth_token_file)
        (E(RAY_AUTH_TOKEN_PATH)), so the token itself never appears in the unit, the environment or the diff.
      - C(disabled) lets anyone who reaches the node's ports run code on the cluster (CVE-2023-48022); the module
        warns. Omitted leaves Ray's own default (Ray 2.60 turns token mode on only where a token file exists).
      - Every node of a cluster needs the same mode and token.
    type: str
    choices: [token, disabled]
  auth_token_file:
    description:
      - File holding the cluster's token, mode 0600, on this host. Required with O(auth_mode=token); a missing,
        empty or group/world-readable file fails before anything starts (not in check mode, where the task that
        writes it does not run either).
    type: path
  start_timeout:
    description: Seconds C(ray start) may take.
    type: int
    default: 120
  stop_timeout:
    description: Seconds the node's processes get to exit after SIGTERM before SIGKILL.
    type: int
    default: 10
  unit_dir:
    description: Directory of the systemd unit file.
    type: path
    default: /etc/systemd/system
"""

EXAMPLES = r"""
- name: Start the Ray head
  llmops.ray_vllm.ray_node:
    name: head
    role: head
    ray_path: /opt/llmops/venv/bin/ray
    temp_dir: /tmp/ray-llmops-head
    node_ip: 10.0.0.10
    num_gpus: 0
    supervisor: systemd
    auth_mode: token
    auth_token_file: /etc/llmops/ray-auth-token

- name: Start a worker with one GPU
  llmops.ray_vllm.ray_node:
    name: gpu-1
    role: worker
    ray_path: /opt/llmops/venv/bin/ray
    temp_dir: /tmp/ray-llmops-gpu-1
    head_address: 10.0.0.10:6379
    node_ip: 10.0.0.11
    num_gpus: 1
    auth_mode: token
    auth_token_file: /etc/llmops/ray-auth-token
    env:
      NCCL_SOCKET_IFNAME: eth0
"""

RETURN = r"""
running:
  description: Whether the node runs after the task (predicted in check mode).
  returned: always
  type: bool
pids:
  description: PIDs of the node's processes (background supervisor) after the task.
  returned: always
  type: list
  elements: int
command:
  description: The C(ray start) command line of the node.
  returned: always
  type: list
  elements: str
action:
  description: What the task did or would do, C(none), C(start), C(restart) or C(stop).
  returned: always
  type: str
log:
  description: Output of C(ray start) when it ran.
  returned: when the node was started
  type: str
unit:
  description: Path of the systemd unit.
  returned: when O(supervisor=systemd)
  type: str
found:
  description:
    - What the task found of a node that ran before (it has a state file, or a unit) but runs no more, and where its
      logs say why; the task starts it again (in check mode, would).
    - For a head about to start, also the processes of this host still attached to its GCS port (RV(stale)).
  returned: when a node that ran before is not running, or stale processes were found
  type: str
  sample: >-
    The Ray worker 'ray-worker-local' ran before but is not running: it died or was stopped outside Ansible. Why it
    stopped is in its logs: /tmp/ray-llmops-ray-worker-local/session_latest/logs (raylet.out).
stale:
  description:
    - For a head about to start, the PIDs of this host's processes still attached to a GCS at one of this host's
      addresses on O(port) (C(--gcs-address)), such as the raylet of a worker on the same host whose head was
      killed. Ray refuses to start a head at an address a local process names, and they cannot rejoin a new head,
      so the task stops them before the start (in check mode, only names them).
  returned: when such processes were found
  type: list
  elements: int
  sample: [48211, 48260]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import (
    NodeLifecycle,
    NodeTools,
    RayNodeError,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

# What the spec cannot say (plugins/module_utils/_value_rules.py): checked before any process is started or stopped.
VALUE_RULES = dict(
    temp_dir="absolute_path",
    head_address="host_port",
    port="port",
    dashboard_port="port",
    dashboard_agent_listen_port="port",
    num_cpus={"int": {"min": 0}},
    num_gpus={"int": {"min": 0}},
    # Ray's smallest object store: 75 MiB.
    object_store_memory={"int": {"min": 78643200}},
    auth_token_file="absolute_path",
    start_timeout={"int": {"min": 1}},
    stop_timeout={"int": {"min": 1}},
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            role=dict(type="str", required=True, choices=["head", "worker"]),
            state=dict(type="str", default="started", choices=["started", "stopped", "restarted"]),
            supervisor=dict(type="str", default="background", choices=["systemd", "background"]),
            ray_path=dict(type="path", required=True),
            temp_dir=dict(type="path", required=True),
            head_address=dict(type="str"),
            node_ip=dict(type="str"),
            port=dict(type="int", default=6379),
            dashboard_host=dict(type="str", default="127.0.0.1"),
            dashboard_port=dict(type="int", default=8265),
            dashboard_agent_listen_port=dict(type="int"),
            num_cpus=dict(type="int"),
            num_gpus=dict(type="int"),
            object_store_memory=dict(type="int"),
            resources=dict(type="dict", default={}),
            env=dict(type="dict", default={}),
            auth_mode=dict(type="str", choices=["token", "disabled"]),
            auth_token_file=dict(type="path"),
            start_timeout=dict(type="int", default=120),
            stop_timeout=dict(type="int", default=10),
            unit_dir=dict(type="path", default="/etc/systemd/system"),
        ),
        required_if=[("role", "worker", ["head_address"]), ("auth_mode", "token", ["auth_token_file"])],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, VALUE_RULES)

    def systemctl(*args):
        return module.run_command([module.get_bin_path("systemctl", required=True)] + list(args))

    if module.params["auth_mode"] == "disabled" and module.params["state"] != "stopped":
        module.warn(
            "Ray node '%s' runs without token authentication (auth_mode=disabled): anyone who reaches its ports can "
            "run code on the cluster (CVE-2023-48022)." % module.params["name"]
        )
    lifecycle = NodeLifecycle(module.params, module.check_mode, NodeTools(systemctl=systemctl))
    try:
        result = lifecycle.run()
    except RayNodeError as error:
        module.fail_json(msg=str(error), **error.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
