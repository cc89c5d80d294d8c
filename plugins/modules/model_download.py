#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: model_download
short_description: Put a model from ModelScope or Hugging Face into a directory, or check one already there
version_added: 0.1.0
description:
  - Downloads O(model_id) at O(revision) with the source's own SDK into C(<dest>.partial), checks every file's hash
    (ModelScope's SDK against its listing's sha256; for Hugging Face this module reads the listing first and checks
    each file's sha256 or git blob id after the download, removing and naming a file that fails), checks every weight
    file holds all the bytes its header promises, writes the completion marker C(.ray_vllm_complete.json) (source,
    model id, revision), and only then renames it to O(dest).
  - An interrupted download resumes from C(<dest>.partial) on the next run without fetching finished files again; a
    partial model is never at O(dest).
  - A failure says what went wrong, naming the model id or revision the hub does not have (404), the file that
    failed its hash check, or the full disk; the result's C(failure) says which.
  - A directory whose marker names the same source, model and revision is left alone.
  - With O(source=local) nothing is fetched; the directory is only checked (already on disk or on NFS).
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
      - Shows the completion marker before and after.
requirements:
  - modelscope (for O(source=modelscope))
  - huggingface_hub (for O(source=huggingface))
options:
  source:
    description: Where the weights come from.
    type: str
    choices: [modelscope, huggingface, local]
    default: modelscope
  model_id:
    description:
      - Repository id, for example C(deepseek-ai/DeepSeek-R1-Distill-Llama-70B).
      - Required unless O(source=local).
    type: str
  revision:
    description: Commit, tag or branch. Pin a commit so every node and every run gets the same weights.
    type: str
    default: master
  dest:
    description: Directory that holds the model.
    type: path
    required: true
  token:
    description: Access token for private repositories.
    type: str
  endpoint:
    description:
      - Hub endpoint override (a mirror, or a local Hugging Face-compatible hub), as a URL; a bare host gets
        C(https://).
      - ModelScope gets it as C(MODELSCOPE_ENDPOINT); huggingface_hub as C(snapshot_download)'s C(endpoint), passed
        with the call because C(HF_ENDPOINT) is read only when the SDK's constants are first imported.
    type: str
"""

EXAMPLES = r"""
- name: Download the seed's model from ModelScope, pinned
  llmops.ray_vllm.model_download:
    source: modelscope
    model_id: deepseek-ai/DeepSeek-R1-Distill-Llama-70B
    revision: master
    dest: /models/DeepSeek-R1-Distill-Llama-70B

- name: Check a model already on NFS
  llmops.ray_vllm.model_download:
    source: local
    dest: /mnt/models/Llama-3.3-70B-Instruct
"""

RETURN = r"""
path:
  description: The model directory.
  returned: always
  type: str
marker:
  description: The completion marker of the directory after the task.
  returned: when the model is complete
  type: dict
reasons:
  description: Why the model was (or would be) fetched; empty when it was already there.
  returned: always
  type: list
  elements: str
model:
  description: Architecture facts read from config.json (model_type, architectures, num_hidden_layers,
    num_attention_heads, num_key_value_heads, head_dim, hidden_size, vocab_size, max_position_embeddings, torch_dtype).
  returned: when the model is complete
  type: dict
failure:
  description: What made the download fail, one of C(not_found), C(disk_full), C(hash) or C(failed).
  returned: when a download failed
  type: str
files:
  description: The files the failure concerns (those that failed their hash check, or failed otherwise).
  returned: when a download failed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_download import (
    ModelDownloadError,
    check_local,
    fetch_model,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", default="modelscope", choices=["modelscope", "huggingface", "local"]),
            model_id=dict(type="str"),
            revision=dict(type="str", default="master"),
            dest=dict(type="path", required=True),
            token=dict(type="str", no_log=True),
            endpoint=dict(type="str"),
        ),
        required_if=[("source", "modelscope", ["model_id"]), ("source", "huggingface", ["model_id"])],
        supports_check_mode=True,
    )
    fail_on_bad_values(module, dict(dest="absolute_path", endpoint="http_url"))
    params = module.params
    try:
        if params["source"] == "local":
            result = check_local(params["dest"].rstrip("/"))
        else:
            result = fetch_model(params, module.check_mode)
    except ModelDownloadError as error:
        module.fail_json(msg=str(error), **error.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
