#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: port_holder
short_description: Say who listens on a TCP port of this host, and whether it is this collection's server
version_added: 0.8.0
description:
  - Reads the listening sockets of this host's network namespace (C(/proc/net/tcp), C(/proc/net/tcp6)) and the
    processes that hold them, then says who holds O(port), as one of
    C(free), C(job), C(serve), C(orphan), C(other).
  - C(job) is a process of the running Ray job named O(job_name) (the job's environment, which Ray gives its driver
    and every child, carries the name). C(orphan) is a process of an ended job of that name, such as a vLLM server
    that outlived its killed Ray head; M(llmops.ray_vllm.ray_job) with O(llmops.ray_vllm.ray_job#module:stop_orphans)
    stops it before it submits again.
  - C(serve) is the port of the Ray Serve application O(serve_app), whose proxy listens there. C(other) is anything
    else; the result names its pid and program, without its arguments, which may hold another program's secrets.
  - The Ray head is asked only when a holder needs it; when it does not answer (a killed head), a process of a job
    of O(job_name) counts as an orphan.
  - Processes of other users are seen only when the module runs as root (become).
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
options:
  port:
    description: The TCP port, from 1 to 65535.
    type: int
    required: true
  job_name:
    description: The name label of the Ray job whose processes are this collection's (M(llmops.ray_vllm.ray_job)'s
      O(llmops.ray_vllm.ray_job#module:name)).
    type: str
    default: vllm
  serve_app:
    description: The Ray Serve application whose proxy may hold O(port). Not looked up when unset.
    type: str
  dashboard_url:
    description: Base URL of the Ray dashboard that runs the jobs, for example V(http://127.0.0.1:8265). Without
      it, every process of a job of O(job_name) counts as an orphan.
    type: str
  token:
    description: Token of a Ray cluster that runs with token authentication, sent as a bearer token.
    type: str
  token_file:
    description:
      - A file on this host that holds the token, used when O(token) is empty (the ray_cluster role keeps it in
        C(ray_cluster_auth_token_file)). A missing file means a cluster without token authentication.
      - The module reads it itself, so the token needs no task of its own and never passes through the play's
        variables.
    type: path
  validate_certs:
    description: Verify the dashboard's TLS certificate for C(https) URLs.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Find who holds the serving port
  llmops.ray_vllm.port_holder:
    port: 8000
    job_name: vllm
    serve_app: llm
    dashboard_url: http://127.0.0.1:8265
  register: serving_port

- name: Refuse a port that another program holds
  ansible.builtin.assert:
    that: serving_port.holder != 'other'
    fail_msg: "{{ serving_port.msg }} Stop that process or choose another port."
"""

RETURN = r"""
holder:
  description: One of C(free), C(job), C(serve), C(orphan), C(other).
  returned: always
  type: str
  sample: orphan
submission_id:
  description: The Ray job of the holding process, for C(job) and C(orphan); null otherwise.
  returned: always
  type: str
  sample: vllm-1f6c1d2e93
processes:
  description: The processes that hold the listening socket, each with its pid, program and the Ray job (name and
    submission id) whose environment it carries, or null.
  returned: always
  type: list
  elements: dict
  sample:
    - pid: 48213
      command: /opt/llmops/venv/bin/python -m vllm.entrypoints.openai.api_server
      job: [vllm, vllm-1f6c1d2e93]
msg:
  description: One sentence on who holds the port.
  returned: always
  type: str
  sample: "Port 8000 is held by pid 48213 of the ended Ray job vllm-1f6c1d2e93 of vllm ..."
ray_unanswered:
  description: The errors of the Ray head when it was asked and did not answer.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._port_holder import RayLookups, observe
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_auth import read_secret
from ansible_collections.llmops.ray_vllm.plugins.module_utils._serve_app import ServeClient
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

ARGUMENT_SPEC = dict(
    port=dict(type="int", required=True),
    job_name=dict(type="str", default="vllm"),
    serve_app=dict(type="str"),
    dashboard_url=dict(type="str"),
    token=dict(type="str", no_log=True),
    token_file=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    fail_on_bad_values(module, dict(port="port", dashboard_url="http_url"))
    params = module.params
    client = None
    if params["dashboard_url"]:
        token = params["token"] or read_secret(params["token_file"]) or None
        client = ServeClient(params["dashboard_url"], token, params["validate_certs"], timeout=5)
    ray = RayLookups(client)
    module.exit_json(**observe(params["port"], params["job_name"], params["serve_app"], ray))


if __name__ == "__main__":
    main()
