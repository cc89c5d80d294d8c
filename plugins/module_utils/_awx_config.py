# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWX objects of playbooks/awx_configure.yml: survey specs built from the shared question catalogue.

A survey spec is stored by AWX as given and returned as given, so building it in one place keeps a second apply
unchanged and keeps the templates that ask the same question asking it the same way.
"""

from __future__ import annotations

# The keys AWX keeps for a survey question (awx/api/views/__init__.py, JobTemplateSurveySpec, AWX 24.6.1).
QUESTION_KEYS = (
    "question_name",
    "question_description",
    "variable",
    "type",
    "required",
    "min",
    "max",
    "default",
    "choices",
)


class SurveyError(ValueError):
    """A template asks a question the catalogue does not have, or a default override names no question."""


def survey_question(key, catalogue, defaults):
    """One question of the catalogue in AWX's shape, its default replaced by ``defaults[key]`` when given."""
    if key not in catalogue:
        raise SurveyError(
            "survey question %r: expected one of %s. Add it to _awx_config_questions or remove it from the "
            "template's questions" % (key, ", ".join(sorted(catalogue)))
        )
    question = {name: value for name, value in catalogue[key].items() if name in QUESTION_KEYS}
    if key in defaults:
        question["default"] = defaults[key]
        _check_default_bounds(key, question)
    return question


def _check_default_bounds(key, question):
    """AWX saves a number default outside min/max and drops it at launch, so the operator must answer; refuse it."""
    kind, default = question.get("type"), question.get("default")
    if kind not in ("integer", "float") or isinstance(default, bool) or not isinstance(default, (int, float)):
        return  # AWX itself refuses a default of the wrong type, with its own message
    low, high = question.get("min"), question.get("max")
    if (low is not None and default < low) or (high is not None and default > high):
        raise SurveyError(
            "awx_config_survey_defaults.%s=%s: expected %s from %s to %s (the question's min and max); AWX would "
            "drop this default at launch" % (key, default, "an integer" if kind == "integer" else "a number", low, high)
        )


def survey_spec(keys, catalogue, name, description="", defaults=None):
    """The survey spec of a template that asks ``keys`` (in that order)."""
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(catalogue))
    if unknown:
        raise SurveyError(
            "awx_config_survey_defaults: %s name no survey question; expected keys among %s"
            % (", ".join(unknown), ", ".join(sorted(catalogue)))
        )
    spec = [survey_question(key, catalogue, defaults) for key in keys]
    return {"name": name, "description": description, "spec": spec}


def template_name(prefix, kind):
    """A job template's name: the configuration's prefix and the operation, e.g. ``llmops.ray_vllm deploy``."""
    return "%s %s" % (prefix, kind.replace("_", " "))
