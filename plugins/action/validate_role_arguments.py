# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""validate_role_arguments: a role's variables against its meta/argument_specs.yml, from inside the role.

ansible.builtin.validate_argument_spec does the checking; this action finds the role's own spec (so a
``tasks_from: preflight.yml``, which Ansible does not validate, is checked exactly like the role's start), and fails
with one message naming the role, the errors and where the variables are documented, without the whole spec that
validate_argument_spec puts into its failure. Once the types fit, ``value_rules`` checks what a spec cannot say
(ranges, ports, paths, names, quantities: plugins/module_utils/_value_rules.py) on the same variables.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action.validate_argument_spec import ActionModule as ValidateArgumentSpec

from ansible_collections.llmops.ray_vllm.plugins.module_utils._value_rules import RuleError, value_problems

SPEC_FILE = os.path.join("meta", "argument_specs.yml")


class ActionModule(ValidateArgumentSpec):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _role_spec(self, role_path, entry_point):
        data = self._loader.load_from_file(os.path.join(role_path, SPEC_FILE)) or {}
        try:
            return data["argument_specs"][entry_point]["options"]
        except (KeyError, TypeError):
            raise AnsibleActionFail(
                "%s has no options for the entry point %r in argument_specs"
                % (os.path.join(role_path, SPEC_FILE), entry_point)
            ) from None

    def _value_problems(self, rules, task_vars):
        values = self.get_args_from_task_vars(dict.fromkeys(rules, {}), task_vars)
        try:
            return value_problems(values, rules)
        except RuleError as error:
            raise AnsibleActionFail("validate_role_arguments: %s" % error) from None

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        role_path = self._task.args.get("role_path") or task_vars.get("role_path")
        if not role_path:
            raise AnsibleActionFail("validate_role_arguments runs inside a role (role_path), or needs role_path.")
        entry_point = self._task.args.get("entry_point", "main")
        rules = self._task.args.get("value_rules") or {}
        role = os.path.basename(os.path.normpath(role_path))
        self._task.args = {"argument_spec": self._role_spec(role_path, entry_point)}
        result = super().run(tmp, task_vars)
        result.pop("argument_spec_data", None)
        result["role"] = role
        if result.get("failed"):
            result["msg"] = (
                "{role}: Validation of arguments failed: {errors}. Fix the variable(s) named; every variable of the "
                "role, with its type, choices and default: ansible-doc -t role llmops.ray_vllm.{role} "
                "(roles/{role}/meta/argument_specs.yml). Nothing was changed."
            ).format(role=role, errors="; ".join(result.get("argument_errors", [])))
            return result
        problems = self._value_problems(rules, task_vars)
        if problems:
            result.update(failed=True, value_errors=problems)
            result["msg"] = (
                "{role}: bad value(s): {problems}. Fix the variable(s) named (ansible-doc -t role "
                "llmops.ray_vllm.{role}). Nothing was changed."
            ).format(role=role, problems="; ".join(problems))
        return result
