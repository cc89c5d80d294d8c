#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_stamp
short_description: Record what a full site.yml run left on a node, or look once whether it still stands
version_added: 0.10.0
description:
  - With O(action=record) (at the end of a full run on platform hosts) writes a record to O(path) on the node, holding
    the settings' digest, a fingerprint of each of O(files) (size and mtime; small files also their sha256; for a
    folder, each file in it) and, on the head, the Ray nodes alive, the vLLM Ray job running and where vLLM answers.
  - With O(action=look) (at the start of a re-run) compares the node with its record, cheapest first, and stops at
    the first difference. It compares the digest, then the files, then this node's raylet (gone or started again),
    then on the head the Ray nodes alive (a restarted node has a new ID), the vLLM job, and a chat completion from
    vLLM. RV(differences) names what differs; none means the node stands as the last full run left it, and site.yml
    leaves it out of its other plays.
  - The record is the run's own bookkeeping, like a fact cache, not part of the deployment, so writing it is
    reported as unchanged (RV(written) says whether it was written).
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
options:
  path:
    description: The record's file on the node. Its folder is made when missing (mode 0700); the file has mode 0600.
    type: path
    required: true
  action:
    description: Write the record (V(record)) or compare the node with it (V(look)).
    type: str
    choices: [look, record]
    default: look
  digest:
    description:
      - The digest of the run's settings and of the collection (the P(llmops.ray_vllm.settings_digest#lookup)
        lookup). A record with another digest differs.
    type: str
    required: true
  files:
    description: With O(action=record), the files and folders the roles manage on this node.
    type: list
    elements: path
    default: []
  controller_files:
    description:
      - With O(action=record), files on the controller that the run keeps (the API key's copy); returned by a look
        as RV(controller_files) for the play to check on the controller.
    type: list
    elements: path
    default: []
  ray_temp_dir:
    description:
      - With O(action=record), the temp dir of this node's Ray node (C(ray start --temp-dir)); the record keeps its
        raylet's pid and start time, and a look finds a node that was killed or started again at once, before Ray's
        own health checks mark it dead.
    type: path
  head:
    description:
      - With O(action=record), on the Ray head, where the look asks Ray and vLLM. The secrets stay in their files,
        which the record names.
    type: dict
    suboptions:
      dashboard_url:
        description: The Ray dashboard's root URL.
        type: str
        required: true
      ray_token_file:
        description: The file holding the Ray cluster's token; none where Ray runs without token authentication.
        type: path
      vllm_url:
        description: vLLM's root URL, as the vLLM gate asks it.
        type: str
        required: true
      ca_path:
        description: The CA file that verifies vLLM's certificate over TLS.
        type: path
      endpoint:
        description: The OpenAI-compatible URL clients use (reported by a look); default O(head.vllm_url).
        type: str
      model:
        description: The served model name that vLLM lists.
        type: str
        required: true
      api_key_file:
        description: The file holding vLLM's API key.
        type: path
      prompt:
        description: The question of the look's chat completion.
        type: str
        default: Say hello.
      max_tokens:
        description: The most tokens the completion may take.
        type: int
        default: 16
      job_name:
        description: The Ray job that runs vLLM (its C(llmops.ray_vllm/name)); none where Ray Serve runs it.
        type: str
attributes:
  check_mode:
    support: full
    details:
      - A look is read-only and runs the same. A record is not written in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Look whether the node stands as the last full run left it
  llmops.ray_vllm.deployment_stamp:
    path: /var/lib/llmops/deployment-ray-head-1.json
    digest: "{{ lookup('llmops.ray_vllm.settings_digest', '^vllm_serve_', '^ray_cluster_') }}"
  register: look

- name: Record the head after a full run
  llmops.ray_vllm.deployment_stamp:
    action: record
    path: /var/lib/llmops/deployment-ray-head-1.json
    digest: "{{ settings_digest }}"
    files: [/models/DeepSeek-R1-Distill-Llama-70B, /etc/llmops/vllm-api-key, /etc/llmops/ray-auth-token]
    head:
      dashboard_url: http://127.0.0.1:8265
      ray_token_file: /etc/llmops/ray-auth-token
      vllm_url: http://127.0.0.1:8000
      model: deepseek-r1-distill-llama-70b
      api_key_file: /etc/llmops/vllm-api-key
      job_name: vllm
"""

RETURN = r"""
current:
  description: With O(action=look), true when nothing differs from the record.
  returned: always
  type: bool
  sample: true
differences:
  description: With O(action=look), what differs, the first found (the look stops there).
  returned: always
  type: list
  elements: str
  sample: ["/work/main/.build/local/vllm-api-key is missing (it was there after the last full run)"]
answer:
  description: With O(action=look) on the head, vLLM's completion when nothing differs (C(text), C(latency_s)).
  returned: when current on the head
  type: dict
  sample: {"text": "Hello! How can I help you today?", "latency_s": 0.41}
endpoint:
  description: Where the look asked vLLM (C(url)), the URL clients use (C(endpoint)), the model and the question.
  returned: when the record has a head
  type: dict
  sample:
    url: http://127.0.0.1:8000
    endpoint: http://127.0.0.1:8000/v1
    model: smollm2-135m-instruct
    question: Who wrote Hamlet?
controller_files:
  description: The controller files the record names.
  returned: always
  type: list
  elements: str
  sample: ["/root/.cache/llmops/vllm-api-key-ray-head-local"]
written:
  description: With O(action=record), whether the record's text was new.
  returned: always
  type: bool
  sample: false
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_stamp import (
    HeadObserver,
    fingerprints,
    look,
    new_stamp,
    parse_stamp,
    raylet_print,
    read_bytes,
    recorded_head,
    stamp_text,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import RayJobError, RayJobsClient
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_node import node_processes
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_sources import observe_dashboard
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_health import observe

HEAD_OPTIONS = dict(
    dashboard_url=dict(type="str", required=True),
    ray_token_file=dict(type="path"),
    vllm_url=dict(type="str", required=True),
    ca_path=dict(type="path"),
    endpoint=dict(type="str"),
    model=dict(type="str", required=True),
    api_key_file=dict(type="path", no_log=False),
    prompt=dict(type="str", default="Say hello."),
    max_tokens=dict(type="int", default=16, no_log=False),
    job_name=dict(type="str"),
)

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    action=dict(type="str", choices=["look", "record"], default="look"),
    digest=dict(type="str", required=True),
    files=dict(type="list", elements="path", default=[]),
    controller_files=dict(type="list", elements="path", default=[]),
    head=dict(type="dict", options=HEAD_OPTIONS),
    ray_temp_dir=dict(type="path"),
)

# A look answers in seconds or finds a difference: it never waits long for a server that is gone.
LOOK_TIMEOUT = 10


def observer_for(module, head):
    """A HeadObserver asking over HTTP: the dashboard's status and nodes, the Jobs API, vLLM."""

    def jobs(url, token):
        try:
            return RayJobsClient(url, token=token or None, timeout=LOOK_TIMEOUT).list_jobs()
        except RayJobError:
            return []

    return HeadObserver(
        head,
        ray_source=lambda url, token: observe_dashboard(module, url, token or None, timeout=LOOK_TIMEOUT),
        jobs_source=jobs,
        vllm_source=lambda **asked: observe(request_timeout=60, **asked),
    )


def read_stamp(path):
    try:
        return parse_stamp(read_bytes(path).decode("utf-8", errors="replace"))
    except OSError:
        return None


def write_stamp(path, text):
    """The record beside its file first, then moved over it, mode 0600; False when it already said this."""
    try:
        if read_bytes(path).decode("utf-8", errors="replace") == text:
            return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".deployment_stamp-")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return True


def look_result(module):
    """The look's result: what differs from the record, and vLLM's answer when nothing does."""
    stamp = read_stamp(module.params["path"])
    differences, answer = look(
        stamp,
        module.params["digest"],
        fingerprints,
        lambda head: observer_for(module, head),
        lambda temp_dir: raylet_print(temp_dir, node_processes),
    )
    result = dict(changed=False, current=not differences, differences=differences, written=False)
    head = (stamp or {}).get("head")
    result["controller_files"] = (stamp or {}).get("controller_files", [])
    if answer is not None:
        result["answer"] = answer
    if head:
        result["endpoint"] = dict(
            url=head["vllm_url"],
            endpoint=head.get("endpoint") or head["vllm_url"],
            model=head["model"],
            question=head["prompt"],
        )
    return result


def record_result(module):
    """Writes the record (not in check mode); leaves none where Ray does not answer on the head."""
    params = module.params
    result = dict(
        changed=False, current=False, differences=[], written=False, controller_files=params["controller_files"]
    )
    head, why_not = (
        recorded_head(params["head"], observer_for(module, params["head"])) if params["head"] else (None, None)
    )
    if why_not:
        module.warn("No record was left, so the next run goes the full way: %s." % why_not)
        return result
    raylet = raylet_print(params["ray_temp_dir"], node_processes) if params["ray_temp_dir"] else None
    if params["ray_temp_dir"] and raylet is None:
        module.warn(
            "No record was left, so the next run goes the full way: no Ray node runs with the temp dir %s."
            % params["ray_temp_dir"]
        )
        return result
    stamp = new_stamp(params["digest"], fingerprints(params["files"]), head, params["controller_files"], raylet)
    if module.check_mode:
        return result
    try:
        result["written"] = write_stamp(params["path"], stamp_text(stamp))
    except OSError as error:
        # The deployment stands either way; only the next run's look has nothing to compare with.
        module.warn(
            "No record was left, so the next run goes the full way: cannot write %s (%s). Fix: make its folder "
            "writable by the connecting user, or set ray_vllm_record_dir to a folder that is." % (params["path"], error)
        )
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**(look_result(module) if module.params["action"] == "look" else record_result(module)))


if __name__ == "__main__":
    main()
