# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWX 24.6.1's rules in awx_double.rules: good input accepted, bad input refused with AWX's own message."""

from __future__ import annotations

from awx_double import rules


def question(**extra):
    return {"type": "text", "question_name": "Q", "variable": "v", "required": False, **extra}


def spec(*questions):
    return {"name": "", "description": "", "spec": list(questions)}


INPUTS = {"fields": [{"id": "token", "label": "Token", "secret": True}]}


def test_good_survey_is_accepted():
    assert rules.survey_spec_errors(spec(question(type="integer", min=1, max=4, default=2))) == []


def test_survey_default_of_wrong_type_is_refused():
    errors = rules.survey_spec_errors(spec(question(type="integer", default="x")))
    assert errors == ["Default value x in survey question 0 expected to be integer."]


def test_survey_duplicate_variable_is_refused():
    errors = rules.survey_spec_errors(spec(question(), question()))
    assert errors == ["'variable' 'v' duplicated in survey question 1."]


def test_survey_non_integer_limit_is_refused():
    errors = rules.survey_spec_errors(spec(question(min="1")))
    assert errors == ["The min limit in survey question 0 expected to be integer."]


def test_survey_default_outside_choices_is_refused():
    errors = rules.survey_spec_errors(spec(question(type="multiplechoice", choices=["a", "b"], default="c")))
    assert errors == ["Default choice must be answered from the choices listed."]


def test_survey_new_encrypted_default_is_refused():
    errors = rules.survey_spec_errors(spec(question(type="password", default="$encrypted$")))
    assert errors == ["$encrypted$ is a reserved keyword, may not be used for new default in position 0."]


def test_survey_default_outside_min_max_is_refused_at_launch_not_at_save():
    # AWX does not check a default against min/max on save; the launch drops the default and asks for an answer.
    survey = spec(question(type="integer", required=True, min=1, max=4, default=9))
    assert rules.survey_spec_errors(survey) == []
    assert rules.survey_extra_vars(survey, {}) == {}
    assert rules.survey_answer_errors(survey, {"v": 9}) == ["'v' value 9 is too large (must be no more than 4)."]


def test_survey_answers():
    survey = spec(
        question(variable="name", required=True, min=3),
        question(variable="n", type="integer", required=False, min=1),
        question(variable="mode", type="multiselect", choices="a\nb", required=False),
    )
    assert rules.survey_answer_errors(survey, {"name": "abc", "n": 2, "mode": ["a"]}) == []
    assert rules.survey_answer_errors(survey, {}) == ["'name' value missing"]
    assert rules.survey_answer_errors(survey, {"name": "ab", "n": "2", "mode": ["c"]}) == [
        "'name' value ab is too small (length is 2 must be at least 3).",
        "Value 2 for 'n' expected to be an integer.",
        "Value c for 'mode' expected to be one of ['a', 'b'].",
    ]


def test_survey_extra_vars_apply_valid_defaults():
    survey = spec(
        question(variable="token", type="password", default="", min=1),
        question(variable="user", type="password", default=""),
        question(variable="size", type="integer", default=2),
    )
    assert rules.survey_extra_vars(survey, {"token": "$encrypted$"}) == {"user": "", "size": 2}
    assert rules.survey_extra_vars(survey, {"size": 3}) == {"user": "", "size": 3}


def test_good_credential_type_is_accepted():
    injectors = {
        "env": {"MY_TOKEN": "{{ token }}"},
        "file": {"template.cfg": "{{ token }}"},
        "extra_vars": {"f": "{{ tower.filename.cfg }}"},
    }
    assert rules.credential_type_errors(INPUTS, injectors) == {}


def test_injector_with_a_bad_key_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"environment": {"X": "{{ token }}"}})
    assert errors == {
        "injectors": [
            "Schema validation error in relative path [] "
            "(Additional properties are not allowed ('environment' was unexpected))"
        ]
    }


def test_ansible_env_var_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"env": {"ANSIBLE_CONFIG": "{{ token }}"}})
    prefix = "Environment variable ANSIBLE_CONFIG may affect Ansible configuration"
    assert errors == {"injectors": [prefix + " so its use is not allowed in credentials."]}


def test_blocklisted_env_var_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"env": {"PATH": "{{ token }}"}})
    assert errors == {"injectors": ["Environment variable PATH is not allowed to be used in credentials."]}


def test_undefined_input_in_template_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"env": {"MY_TOKEN": "{{ secret }}"}})
    assert errors == {"injectors": ["MY_TOKEN uses an undefined field ('secret' is undefined)"]}


def test_bad_file_template_name_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"file": {"template-cfg": "{{ token }}"}})
    (message,) = errors["injectors"]
    assert message.startswith(
        "Schema validation error in relative path ['file'] ('template-cfg' does not match any of the regexes"
    )


def test_filename_without_unnamed_file_is_refused():
    errors = rules.credential_type_errors(INPUTS, {"env": {"CFG": "{{ tower.filename }}"}})
    assert errors == {
        "injectors": [
            "CFG uses an undefined field (Must define unnamed file injector in order to reference `tower.filename`.)"
        ]
    }


def test_bad_input_field_id_is_refused():
    errors = rules.credential_type_errors({"fields": [{"id": "1x", "label": "X"}]}, {})
    assert errors == {"inputs": ["1x is an invalid variable name"]}
