#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: serve_status
short_description: Gate on a Ray Serve application being ready with its replicas
version_added: 0.2.0
description:
  - Reads the Serve instance through the Ray dashboard's Serve REST API (C(/api/serve/applications/)) and says
    whether application O(name) serves, as one of these statuses
    C(unreachable), C(not_deployed), C(deploying), C(deploy_failed), C(unhealthy), C(scaling), C(ready).
  - C(ready) means the application is C(RUNNING) and every deployment runs its replicas, at least as many as
    O(replicas) names for it, else Serve's C(target_num_replicas).
  - A failure lists the application's and each deployment's status, replica states and Serve's own message (a
    replica that cannot be scheduled names the resources it needs and what the cluster has), and what to do.
  - Whether the replicas answer is the next gate's, M(llmops.ray_vllm.vllm_health), with a real completion.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
  - llmops.ray_vllm.kubernetes_service
  - llmops.ray_vllm.ray_dashboard
  - llmops.ray_vllm.wait
options:
  name:
    description: The application's name in Serve.
    type: str
    required: true
  replicas:
    description:
      - "The least running replicas per deployment, by deployment name, for example
        V({LLMServer:my-model: 2}). A deployment not named needs Serve's C(target_num_replicas)."
      - With autoscaling, name the minimum; Serve's target moves with the load.
    type: dict
"""

EXAMPLES = r"""
- name: Wait until both replicas serve, one progress line per try
  llmops.ray_vllm.serve_status:
    dashboard_url: http://127.0.0.1:8265
    name: llm
    replicas: {"LLMServer:smollm2-135m-instruct": 2}
  register: serve
  until: serve is not failed or serve.status == 'deploy_failed'
  retries: 120
  delay: 5
"""

RETURN = r"""
status:
  description: One of C(unreachable), C(not_deployed), C(deploying), C(deploy_failed), C(unhealthy), C(scaling),
    C(ready).
  returned: always
  type: str
  sample: ready
ready:
  description: Whether O(name) serves with its replicas.
  returned: always
  type: bool
  sample: true
application:
  description: The application's status, message, route prefix and, per deployment, its status, message, target
    and running replicas and the count of replicas in each state; null when Serve has no such application.
  returned: always
  type: dict
  sample:
    status: RUNNING
    message: ""
    route_prefix: /
    deployments:
      "LLMServer:smollm2-135m-instruct":
        status: HEALTHY
        message: ""
        target: 2
        running: 2
        states: {RUNNING: 2}
      KeyedOpenAiIngress: {status: HEALTHY, message: "", target: 1, running: 1, states: {RUNNING: 1}}
messages:
  description: What was seen, one line per fact, when not ready.
  returned: always
  type: list
  elements: str
attempts:
  description: How many times the Serve API was read.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import (
    WAIT_VALUE_RULES,
    with_ray_dashboard,
    with_wait,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import module_transport
from ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_app import (
    ServeAppError,
    checked_replicas,
    client_from_module,
    observe_readiness,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import poll

ARGUMENT_SPEC = with_ray_dashboard(
    with_wait(
        dict(
            name=dict(type="str", required=True),
            replicas=dict(type="dict"),
        )
    )
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("dashboard_url", "service")],
        required_one_of=[("dashboard_url", "service")],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, dict(WAIT_VALUE_RULES, dashboard_url="http_url"))
    params = dict(module.params)
    try:
        params["replicas"] = checked_replicas(params["replicas"])
    except ServeAppError as error:
        module.fail_json(msg=error.msg)
    client = client_from_module(module, module_transport)
    timeout = params["timeout"] if params["wait"] else 0
    result, attempts, _elapsed = poll(
        lambda: observe_readiness(client, params), lambda seen: seen["ready"], timeout, params["interval"]
    )
    result["attempts"] = attempts
    if result["ready"]:
        module.exit_json(changed=False, **result)
    module.fail_json(changed=False, **result)


if __name__ == "__main__":
    main()
