# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that build the AWX objects of playbooks/awx_configure.yml (docs: awx_survey_spec.yml,
awx_template_name.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ray_vllm.plugins.module_utils._awx_config import (
    SurveyError,
    survey_spec,
    template_name,
)


def _awx_survey_spec(keys, catalogue, name, description="", defaults=None):
    try:
        return survey_spec(list(keys), dict(catalogue), name, description, defaults)
    except SurveyError as error:
        raise AnsibleFilterError(str(error)) from None


class FilterModule:
    def filters(self):
        return {"awx_survey_spec": _awx_survey_spec, "awx_template_name": template_name}
