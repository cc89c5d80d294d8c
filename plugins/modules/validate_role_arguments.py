#!/usr/bin/python
# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# The work is done by the action plugin of the same name (plugins/action/validate_role_arguments.py), on the
# controller; this file holds its documentation, as ansible.builtin.validate_argument_spec's does.

DOCUMENTATION = r"""
module: validate_role_arguments
short_description: Check a role's variables against its own argument spec, from inside the role
version_added: 0.1.0
description:
  - Validates the variables of the role it runs in against that role's C(meta/argument_specs.yml) entry point, with
    M(ansible.builtin.validate_argument_spec)'s rules (types, choices, required options, C(no_log)).
  - Every role of this collection starts its C(tasks/preflight.yml) with it, so a preflight run with
    C(tasks_from=preflight.yml), which Ansible does not validate, checks the variables as the role's start does.
  - A failure names the role, each error, and where the role's variables are documented, and leaves the spec out of
    the output (M(ansible.builtin.validate_argument_spec) prints all of it).
author:
  - llmops.ray_vllm maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ray_vllm.attributes
  - llmops.ray_vllm.attributes.read_only
options:
  role_path:
    description:
      - The role whose spec is used. Defaults to C(role_path), the role the task runs in.
    type: path
  entry_point:
    description: The entry point of C(argument_specs) to validate against.
    type: str
    default: main
  value_rules:
    description:
      - Variable name to rule, checked once the types fit, for what an argument spec cannot say. A rule is
        V(port), V(node_port), V(absolute_path), V(http_url), V(host_port), V(version), V(quantity), V(dns_label),
        V(not_empty), or a dict of one of C(int) (C(min), C(max)), C(number) (C(above), C(min), C(max)),
        C(dns_label) (the most characters) and C(min_length); a list applies several.
      - Unset values (null or empty text) pass every rule but V(not_empty).
      - The roles keep their tables in C(vars/main.yml) as C(_<role>_value_rules).
    type: dict
    default: {}
"""

EXAMPLES = r"""
# roles/<name>/tasks/preflight.yml
- name: Check the role's variables against its argument spec
  llmops.ray_vllm.validate_role_arguments:
"""

RETURN = r"""
role:
  description: The role whose variables were checked.
  returned: always
  type: str
  sample: vllm_serve
value_errors:
  description: One message per variable that breaks its rule in O(value_rules), naming the value and what is accepted.
  returned: failure
  type: list
  elements: str
  sample:
    - "vllm_serve_gpu_memory_utilization=1.5: expected a number above 0 and at most 1"
argument_errors:
  description: One message per variable that does not fit the spec.
  returned: failure
  type: list
  elements: str
  sample:
    - >-
      argument 'vllm_serve_port' is of type str and we were unable to convert to int:
      "'eighty'" cannot be converted to an int
"""
