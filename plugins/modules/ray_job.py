#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ray_job
short_description: Keep one long-running Ray job (such as a vLLM server) submitted, idempotently
version_added: 0.1.0
description:
  - Manages a Ray job through the Ray Jobs REST API of the Ray dashboard (C(/api/jobs/)), under a logical O(name).
  - Every job it submits carries two metadata labels, C(llmops.ray_vllm/name) and C(llmops.ray_vllm/config-hash),
    the sha256 of O(entrypoint), O(runtime_env), O(entrypoint_num_cpus), O(entrypoint_num_gpus),
    O(entrypoint_resources) and O(metadata). Its submission id is C(<name>-<first 12 hash digits>-<unix time>),
    because Ray never reuses the id of an ended job; with C(-2), C(-3)... added when Ray lists that id already (a
    second submit within one second, or a wall clock set back to an earlier job's second).
  - With O(state=present), a C(PENDING) or C(RUNNING) job of this name with the same hash is kept (no change). Any
    other C(PENDING) or C(RUNNING) job of this name is stopped and awaited until it ended, then a new job is
    submitted.
  - With O(state=absent), every C(PENDING) or C(RUNNING) job of this name is stopped and awaited until it ended.
  - Ray cannot stop a job that is C(PENDING) for want of resources before it gets them. Such a job (which holds no
    resources) is asked to stop, watched for 5 seconds, then left C(PENDING) with a warning; it ends once it gets
    its resources, or when Ray's E(RAY_JOB_START_TIMEOUT_SECONDS) passes.
  - Jobs that were not submitted by this module (no name label) are never touched.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Lists the jobs and reports what would be stopped and whether a job would be submitted; stops and submits
        nothing.
  diff_mode:
    support: full
    details:
      - Shows C(submission_id), C(entrypoint), C(hash) and C(status) of the job of this name before and after.
options:
  dashboard_url:
    description:
      - Base URL of the Ray dashboard, for example V(http://127.0.0.1:8265) (C(ray start --dashboard-port)).
    type: str
    required: true
  token:
    description:
      - Token of a Ray cluster that runs with token authentication (E(RAY_AUTH_MODE=token)), the cluster's
        E(RAY_AUTH_TOKEN). Sent in the C(Authorization) header as a bearer token.
    type: str
  validate_certs:
    description: Verify the dashboard's TLS certificate for C(https) URLs.
    type: bool
    default: true
  state:
    description: V(present) keeps one job of O(name) with these settings; V(absent) stops every job of O(name).
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - Logical name of the job, such as V(vllm). Letters, digits, C(.), C(_) and C(-); 63 characters at most.
    type: str
    required: true
  entrypoint:
    description:
      - Shell command the job runs. Required with O(state=present).
      - It runs with the E(PATH) of the Ray node, so name the Python of a virtualenv by its full path.
    type: str
  runtime_env:
    description:
      - Ray runtime environment of the job, for example C(env_vars).
      - C(working_dir) and C(py_modules) must be URIs (C(https://.../x.zip), C(s3://...)); the REST API cannot upload
        local directories, so a local path is refused before anything is submitted.
    type: dict
  entrypoint_num_cpus:
    description: CPUs Ray reserves for the entrypoint command itself.
    type: float
  entrypoint_num_gpus:
    description: GPUs Ray reserves for the entrypoint command itself.
    type: float
  entrypoint_resources:
    description: Custom Ray resources reserved for the entrypoint command, name to amount.
    type: dict
  metadata:
    description:
      - Extra labels stored with the job, name to value; values are sent as strings.
      - They count in the config hash, so a change here replaces the job. The C(llmops.ray_vllm/) keys are reserved.
    type: dict
  wait_running:
    description:
      - After submitting (or finding) the job, wait until Ray reports it C(RUNNING), and fail with the tail of its log
        if it ends instead.
      - C(RUNNING) means the entrypoint process started; whether a server in it answers is another check.
      - With V(false), look at the job once and fail only if it already ended C(FAILED) or C(STOPPED).
    type: bool
    default: true
  stop_orphans:
    description:
      - Also stop this host's processes of ended jobs of O(name), found by the job environment Ray hands every driver
        and its children (C(RAY_JOB_CONFIG_JSON_ENV_VAR), whose metadata carries the name). Such leftovers hold
        memory, ports and GPUs the next job needs. An engine process outlives its killed API server, and a whole
        server outlives a killed Ray head.
      - Only where the task runs on the host of the jobs' drivers (the Ray head). With O(state=present), every
        process of a job of O(name) other than the kept one is stopped, before a new job is submitted. With
        O(state=absent), every one, also when the dashboard cannot be reached (a head that is gone has no jobs to
        stop, but what they left on this host still goes; RV(ray_unreachable) says why the head was not asked).
      - They are listed in RV(orphans) and RV(found); in check mode they are only listed.
    type: bool
    default: false
  settle_time:
    description:
      - With O(wait_running=true), seconds a job submitted by this run must stay C(RUNNING) before the module returns.
        An entrypoint that fails at once (a bad argument, a missing file) is C(RUNNING) for a moment first.
      - A job kept from an earlier run is not watched again. V(0) returns as soon as the job is C(RUNNING).
    type: int
    default: 10
  timeout:
    description:
      - Seconds to wait for the stopped jobs to end (a job stopped while C(PENDING) is watched 5 seconds at most) and,
        separately, with O(wait_running=true), for the job to be C(RUNNING).
    type: int
    default: 300
  interval:
    description: Seconds between two looks while waiting.
    type: int
    default: 5
notes:
  - Sends its HTTP requests from the host the task runs on; delegate to a host that can reach O(dashboard_url).
  - The job's log stays in Ray; RV(log_command) prints the command that follows it.
seealso:
  - name: Ray Jobs REST API
    description: The endpoints this module calls.
    link: https://docs.ray.io/en/latest/cluster/running-applications/job-submission/rest.html
"""

EXAMPLES = r"""
- name: Run the vLLM server as a Ray job
  llmops.ray_vllm.ray_job:
    dashboard_url: http://127.0.0.1:8265
    name: vllm
    entrypoint: >-
      /opt/llmops/venv/bin/python -m vllm.entrypoints.openai.api_server
      --model /models/Qwen2.5-7B-Instruct --tensor-parallel-size 2 --distributed-executor-backend ray
    runtime_env:
      env_vars:
        HF_HUB_OFFLINE: "1"
    metadata:
      served_model_name: qwen2.5-7b-instruct
    timeout: 600
  register: vllm_job

- name: Show where the server log is
  ansible.builtin.debug:
    msg: "{{ vllm_job.log_command }}"

- name: Stop it
  llmops.ray_vllm.ray_job:
    dashboard_url: http://127.0.0.1:8265
    token: "{{ ray_auth_token }}"
    name: vllm
    state: absent
"""

RETURN = r"""
submission_id:
  description:
    - Submission id of the job of O(name) now; null with O(state=absent), and in check mode when a job would be
      submitted.
  returned: always
  type: str
  sample: vllm-3f2a9c1b7d4e-1795862485
status:
  description: Ray status of that job when last seen, C(PENDING), C(RUNNING), C(STOPPED), C(SUCCEEDED) or C(FAILED).
  returned: always
  type: str
  sample: RUNNING
status_message:
  description: Ray's message about that status.
  returned: always
  type: str
  sample: Job is currently running.
config_hash:
  description: sha256 of the job settings, as stored in the job's C(llmops.ray_vllm/config-hash) metadata.
  returned: always
  type: str
  sample: 3f2a9c1b7d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b
replaced:
  description: Submission ids of the jobs of O(name) stopped by this run (in check mode, that would be stopped).
  returned: always
  type: list
  elements: str
  sample: [vllm-0c1d2e3f4a5b-1795860000]
log_command:
  description: Command that follows the job's log; null when there is no job.
  returned: always
  type: str
  sample: ray job logs -f vllm-3f2a9c1b7d4e-1795862485 --address http://127.0.0.1:8265
found:
  description:
    - What a submission found when no job of O(name) was active and the newest one had C(FAILED) (its process died
      or exited with an error), with the job, Ray's message, its last 5 log lines and the command that reads its
      log. The task submits a new job (in check mode, would).
    - With O(stop_orphans=true), also the processes of ended jobs it stopped (or would stop).
  returned: when the newest job of O(name) failed and none is active, or orphans were found
  type: str
ray_unreachable:
  description: With O(state=absent) and O(stop_orphans=true), why the dashboard could not be asked for the jobs (only
    this host's processes of jobs of O(name) were looked for then).
  returned: when the dashboard could not be reached
  type: str
orphans:
  description:
    - With O(stop_orphans=true), the PIDs of this host's processes of ended jobs of O(name) that the task stopped (in
      check mode, would stop).
  returned: with O(stop_orphans=true)
  type: list
  elements: int
logs_tail:
  description:
    - The last 40 lines of the job's log, when the job ended, did not reach C(RUNNING) in time, or did not stay
      C(RUNNING) for O(settle_time).
  returned: failure
  type: str
  sample: "ValueError: model not found: /models/missing"
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import WAIT_ARGUMENT_SPEC, WAIT_VALUE_RULES
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import (
    NAME_PATTERN,
    HostProcesses,
    RayJobError,
    RayJobsClient,
    ensure_absent,
    ensure_present,
    job_spec,
    local_runtime_env_paths,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import stop_processes
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

# How long a leftover process gets after SIGTERM before SIGKILL.
ORPHAN_STOP_TIMEOUT = 10

ARGUMENT_SPEC = dict(
    dashboard_url=dict(type="str", required=True),
    token=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    name=dict(type="str", required=True),
    entrypoint=dict(type="str"),
    runtime_env=dict(type="dict"),
    entrypoint_num_cpus=dict(type="float"),
    entrypoint_num_gpus=dict(type="float"),
    entrypoint_resources=dict(type="dict"),
    metadata=dict(type="dict"),
    wait_running=dict(type="bool", default=True),
    settle_time=dict(type="int", default=10),
    stop_orphans=dict(type="bool", default=False),
    timeout=WAIT_ARGUMENT_SPEC["timeout"],
    interval=WAIT_ARGUMENT_SPEC["interval"],
)

# What the spec cannot say (plugins/module_utils/_value_rules.py): checked before anything is sent.
VALUE_RULES = dict(
    WAIT_VALUE_RULES,
    dashboard_url="http_url",
    settle_time={"int": {"min": 0}},
    entrypoint_num_cpus={"number": {"min": 0}},
    entrypoint_num_gpus={"number": {"min": 0}},
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ["entrypoint"])],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, VALUE_RULES)
    params = module.params
    if not NAME_PATTERN.match(params["name"]):
        module.fail_json(
            msg=f"name {params['name']!r} must be letters, digits, '.', '_' or '-' (63 at most): "
            "it goes into submission ids and URLs"
        )
    if not re.match(r"^https?://[^/]", params["dashboard_url"]):
        module.fail_json(msg=f"dashboard_url {params['dashboard_url']!r} must start with http:// or https://")
    client = RayJobsClient(params["dashboard_url"], params["token"], params["validate_certs"])
    host = None
    if params["stop_orphans"]:
        host = HostProcesses(stop=lambda pids: stop_processes(pids, ORPHAN_STOP_TIMEOUT))
    try:
        if params["state"] == "absent":
            result = ensure_absent(
                client, params["name"], module.check_mode, params["timeout"], params["interval"], host=host
            )
        else:
            local_paths = local_runtime_env_paths(params["runtime_env"])
            if local_paths:
                module.fail_json(
                    msg=f"runtime_env has local paths ({', '.join(local_paths)}): the Ray Jobs REST API cannot upload "
                    "them. Use a URI (https://.../x.zip, s3://...), or put the files on every node and cd there in "
                    "the entrypoint"
                )
            try:
                spec = job_spec(
                    params["entrypoint"],
                    runtime_env=params["runtime_env"],
                    entrypoint_num_cpus=params["entrypoint_num_cpus"],
                    entrypoint_num_gpus=params["entrypoint_num_gpus"],
                    entrypoint_resources=params["entrypoint_resources"],
                    metadata=params["metadata"],
                )
            except (TypeError, ValueError) as error:
                module.fail_json(msg=f"invalid job settings: {error}")
            result = ensure_present(
                client,
                params["name"],
                spec,
                check_mode=module.check_mode,
                wait_running=params["wait_running"],
                timeout=params["timeout"],
                interval=params["interval"],
                settle_time=max(params["settle_time"], 0),
                host=host,
            )
    except RayJobError as error:
        failed = dict(error.result)
        if not module._diff:
            failed.pop("diff", None)
        for warning in failed.pop("warnings", []):
            module.warn(warning)
        module.fail_json(msg=error.msg, **failed)
    if not module._diff:
        result.pop("diff", None)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
