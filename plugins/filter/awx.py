# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that build the AWX objects of playbooks/awx_configure.yml (docs: awx_survey_spec.yml,
awx_template_name.yml). Their module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _awx_survey_spec(keys, catalogue, name, description="", defaults=None):
    return lazy("_awx_config", "survey_spec", ["SurveyError"])(list(keys), dict(catalogue), name, description, defaults)


class FilterModule:
    def filters(self):
        return {"awx_survey_spec": _awx_survey_spec, "awx_template_name": lazy("_awx_config", "template_name")}
