# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The survey specs of the AWX configuration (roles/awx_config) built from its question catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._awx_config import (
    SurveyError,
    survey_spec,
    template_name,
)

ROLE_VARS = Path(__file__).resolve().parents[4] / "roles" / "awx_config" / "vars" / "main.yml"


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def catalogue():
    with open(ROLE_VARS, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)["_awx_config_questions"]


def test_a_survey_asks_the_questions_in_order_with_only_awx_keys():
    questions = {"a": {"variable": "x", "type": "text", "question_name": "A", "required": True, "note": "ours"}}
    questions["b"] = {"variable": "y", "type": "integer", "question_name": "B", "required": False, "min": 1}
    spec = survey_spec(["b", "a"], questions, "deploy", "Deploys")
    assert spec == {
        "name": "deploy",
        "description": "Deploys",
        "spec": [
            {"variable": "y", "type": "integer", "question_name": "B", "required": False, "min": 1},
            {"variable": "x", "type": "text", "question_name": "A", "required": True},
        ],
    }


def test_a_default_override_replaces_the_catalogues_default_and_leaves_the_catalogue_alone():
    questions = catalogue()
    spec = survey_spec(["namespace"], questions, "verify", defaults={"namespace": "llm-staging"})
    assert spec["spec"][0]["default"] == "llm-staging"
    assert questions["namespace"]["default"] == "llm"


def test_an_unknown_question_or_override_is_named_with_the_known_keys():
    with pytest.raises(SurveyError, match=r"survey question 'replica': expected one of .*replicas"):
        survey_spec(["replica"], catalogue(), "deploy")
    with pytest.raises(SurveyError, match=r"awx_config_survey_defaults: nmespace name no survey question"):
        survey_spec(["namespace"], catalogue(), "verify", defaults={"nmespace": "x"})


def test_the_api_key_is_a_password_and_the_bounds_are_typed():
    questions = catalogue()
    assert questions["api_key"]["type"] == "password"
    assert questions["max_model_len"]["type"] == "integer" and questions["max_model_len"]["min"] >= 1
    assert questions["gpu_memory_utilization"]["type"] == "float"
    # AWX takes only integer bounds, even for a float question.
    assert (questions["gpu_memory_utilization"]["min"], questions["gpu_memory_utilization"]["max"]) == (0, 1)


def test_template_names_read_as_the_operation():
    assert template_name("llmops.ray_vllm", "support_bundle") == "llmops.ray_vllm support bundle"


def test_a_number_default_outside_the_questions_bounds_is_refused():
    with pytest.raises(SurveyError, match=r"max_model_len=10: expected an integer from 256 to 1048576"):
        survey_spec(["max_model_len"], catalogue(), "deploy", defaults={"max_model_len": 10})
    spec = survey_spec(["max_model_len"], catalogue(), "deploy", defaults={"max_model_len": 4096})
    assert spec["spec"][0]["default"] == 4096
