# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: settings_digest
author:
  - llmops.ray_vllm maintainers (@llmops)
version_added: 0.10.0
short_description: One digest of the variables a run is given and of the collection's code
description:
  - Returns the sha256 of the values of every variable whose name matches one of the regular expressions in
    O(_terms), of the inventory's groups, and of this collection's own files (its roles, playbooks, plugins and meta).
  - Two runs get the same digest only when they are given the same settings by the same collection, which is what
    site.yml's look (M(llmops.ray_vllm.deployment_stamp)) compares before it leaves a node out of its plays.
  - A value that refers to a variable not defined yet (a role default, a fact) is taken as written, not rendered.
options:
  _terms:
    description: Regular expressions of the variable names to digest (searched, so C(^vllm_serve_) is a prefix).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Digest the settings of every role of the collection
  ansible.builtin.set_fact:
    settings_digest: "{{ lookup('llmops.ray_vllm.settings_digest', '^(model_storage|ray_cluster|vllm_serve)_') }}"
"""

RETURN = r"""
_raw:
  description: The digest, 64 hexadecimal digits, as the only item of a list.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.llmops.ray_vllm.plugins.module_utils._deployment_stamp import (
    chosen_names,
    collection_digest,
    settings_digest,
)

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LookupModule(LookupBase):
    def rendered(self, value):
        """The value with its templates rendered; as written where it needs what is not defined yet."""
        try:
            return self._templar.template(value)
        except AnsibleError:
            return str(value)

    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        try:
            names = chosen_names(variables, terms)
        except Exception as error:  # re.error: the message names the pattern
            raise AnsibleError(
                "settings_digest: %s: expected regular expressions of variable names (%s)" % (terms, error)
            ) from None
        values = {name: self.rendered(variables[name]) for name in names}
        values["groups"] = self.rendered(variables.get("groups", {}))
        return [settings_digest(values, collection_digest(COLLECTION_ROOT))]
