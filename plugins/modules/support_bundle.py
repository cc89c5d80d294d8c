#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: support_bundle
short_description: Write a redacted support bundle (a gzipped tarball) of collected diagnostics
version_added: 0.8.0
description:
  - Turns each of O(items) (a registered result, a value, or an error) into one member of a gzipped tarball
    C(<dest_dir>/llmops-support-<release>-<timestamp>.tar.gz), mode C(0600), all members under one top directory
    named like the file, with C(MANIFEST.json) first (each member's size and redaction count, and the error of every
    item that could not be collected). A name an earlier bundle has (the same second, or a clock set back) gets
    C(-2), C(-3)... before C(.tar.gz); an earlier bundle is never replaced.
  - An item that failed or was skipped never fails the module; its error is kept in the manifest.
  - Removes every string of O(secrets) (as given and base64-encoded) and generic credential shapes
    (C(Authorization) headers, C(Bearer) tokens, C(--api-key) and C(--token) flags, C(*_TOKEN=) and C(api_key:)
    settings, Hugging Face tokens); in structured values, the value of every key that names a secret.
  - The role M(llmops.ray_vllm.support_bundle) collects the items; use this module through it.
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
options:
  dest_dir:
    description:
      - Absolute directory the bundle is written to (created with mode C(0700) when missing).
    type: path
    required: true
  release:
    description:
      - Release name in the bundle's file name.
    type: str
    default: llm
  items:
    description:
      - What was collected, in order. Each is a dict with C(name) (the member's relative path, for example
        C(ray/status.txt)) and one of C(result), C(content) or C(error).
      - C(result) is a registered task result. Its C(json), C(stdout), C(log_lines) or slurped C(content) is kept,
        else the result without Ansible's own keys; a failed or skipped one adds its message to the manifest's errors.
      - C(content) is a value kept as it is, a string as text and anything else as JSON.
      - C(error) says why the item could not be collected.
    type: list
    elements: dict
    required: true
  secrets:
    description:
      - Strings that must not appear in the bundle (the vLLM API key, the Ray token, the hub token). Strings shorter
        than 8 characters are ignored (too common to hunt for in logs). Empty strings are skipped.
    type: list
    elements: str
    default: []
  max_member_bytes:
    description:
      - Largest member in bytes; a larger one keeps its end.
    type: int
    default: 4194304
attributes:
  check_mode:
    support: full
    details:
      - Reports the path and members it would write, and writes nothing.
  diff_mode:
    support: none
notes:
  - Every run writes a new bundle (its name carries the time), so the module reports changed unless in check mode.
"""

EXAMPLES = r"""
- name: Write the bundle on the controller
  delegate_to: localhost
  llmops.ray_vllm.support_bundle:
    dest_dir: /tmp/llmops-support
    release: llm
    items:
      - name: gate.json
        content: "{{ failed_gate }}"
      - name: ray/status.txt
        result: "{{ ray_status_v }}"
    secrets:
      - "{{ vllm_api_key }}"
  no_log: false
  register: bundle
"""

RETURN = r"""
path:
  description: Absolute path of the bundle (in check mode, the path it would have).
  returned: always
  type: str
  sample: /tmp/llmops-support/llmops-support-llm-20261206T031500Z.tar.gz
members:
  description: Paths inside the tarball.
  returned: always
  type: list
  elements: str
  sample: [llmops-support-llm-20261206T031500Z/MANIFEST.json, llmops-support-llm-20261206T031500Z/ray/status.txt]
errors:
  description: Item name to the error that kept it from being collected.
  returned: always
  type: dict
  sample: {ray/serve.json: "Status code was 404"}
redactions:
  description: How many secrets and credential shapes were replaced by C(<redacted>).
  returned: always
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ray_vllm.plugins.module_utils._support_bundle import SupportBundleError, make_bundle

ARGUMENT_SPEC = dict(
    dest_dir=dict(type="path", required=True),
    release=dict(type="str", default="llm"),
    items=dict(type="list", elements="dict", required=True),
    secrets=dict(type="list", elements="str", default=[], no_log=True),
    max_member_bytes=dict(type="int", default=4194304),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        result = make_bundle(
            params["dest_dir"],
            params["release"],
            params["items"],
            secrets=params["secrets"],
            check_mode=module.check_mode,
            max_bytes=params["max_member_bytes"],
        )
    except (SupportBundleError, OSError) as error:
        module.fail_json(msg="support_bundle: could not write the bundle in %s: %s" % (params["dest_dir"], error))
    module.exit_json(changed=not module.check_mode, **result)


if __name__ == "__main__":
    main()
