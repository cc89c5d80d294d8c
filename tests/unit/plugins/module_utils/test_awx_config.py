# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The survey specs of the AWX configuration (roles/awx_config) built from its question catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._awx_config import (
    SurveyError,
    survey_spec,
    template_name,
)

REPO = Path(__file__).resolve().parents[4]
ROLE_VARS = REPO / "roles" / "awx_config" / "vars" / "main.yml"


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def role_vars():
    with open(ROLE_VARS, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


def catalogue():
    return role_vars()["_awx_config_questions"]


def template_questions(kind):
    """The question keys of one job template, its ``questions`` resolved as the role's Jinja would."""
    variables = role_vars()
    (template,) = [t for t in variables["_awx_config_job_templates"] if t["kind"] == kind]
    questions = template["questions"]
    if isinstance(questions, str):  # "{{ _awx_config_<name>_questions [+ [...]] }}"
        expression = questions.strip().removeprefix("{{").removesuffix("}}").strip()
        questions = []
        for part in expression.split("+"):
            part = part.strip()
            questions += yaml.safe_load(part) if part.startswith("[") else variables[part]
    return questions


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


def _variables(keys):
    questions = catalogue()
    return {questions[key]["variable"] for key in keys}


def _what_verify_looks_at_depends_on():
    """The deploy's survey variables that shape what verify looks at: those the plan reads (verify plans again, from
    playbooks/vars/plan_request.yml) and those inventories/prod derives other values from (the served model name and
    the model's folder follow the model id)."""
    deploy = _variables(template_questions("deploy"))
    plan = set(
        yaml.safe_load((REPO / "playbooks" / "vars" / "plan_request.yml").read_text())["_ray_vllm_plan_variables"]
    )
    prod = yaml.safe_load((REPO / "inventories" / "prod" / "group_vars" / "all.yml").read_text())
    derived = {
        variable
        for variable in deploy
        for name, value in prod.items()
        if name != variable and isinstance(value, str) and re.search(r"\b%s\b" % variable, value)
    }
    return deploy & plan, derived


def test_verify_asks_every_deploy_question_that_shapes_what_it_looks_at():
    planned, derived = _what_verify_looks_at_depends_on()
    # What the analysis must find, so a change of the inventory or the plan's inputs is seen here.
    assert derived == {"model_storage_model_id"}
    assert planned == {"vllm_serve_max_model_len", "vllm_serve_gpu_memory_utilization", "ray_vllm_replicas"}
    assert _variables(template_questions("verify")) == planned | derived | {"ray_vllm_namespace"}


def test_verify_and_teardown_ask_the_deploys_questions_as_the_deploy_asks_them():
    """Same question, same default: a standalone verify left at its defaults looks at a deploy left at its own."""
    deploy = survey_spec(template_questions("deploy"), catalogue(), "deploy")["spec"]
    by_variable = {question["variable"]: question for question in deploy}
    for kind in ("verify", "teardown"):
        shared = [
            q for q in survey_spec(template_questions(kind), catalogue(), kind)["spec"] if q["variable"] in by_variable
        ]
        assert shared and all(question == by_variable[question["variable"]] for question in shared), kind


def test_teardown_asks_the_model_id_its_model_folder_follows():
    """keep_model=true removes model_storage_path, which inventories/prod derives from the model id."""
    _planned, derived = _what_verify_looks_at_depends_on()
    assert _variables(template_questions("teardown")) == derived | {
        "ray_vllm_teardown_confirm",
        "ray_vllm_teardown_remove_model",
        "ray_vllm_namespace",
    }
    assert _variables(template_questions("support_bundle")) == {"ray_vllm_namespace"}


def test_an_unknown_question_names_the_catalogue_variable():
    with pytest.raises(SurveyError, match=r"Add it to _awx_config_questions or remove it"):
        survey_spec(["nope"], catalogue(), "verify")
