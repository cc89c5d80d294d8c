# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWX's own validation rules, as pure functions, so that tests refuse what a real AWX refuses.

Every rule here was written from the AWX 24.6.1 source (tag 24.6.1 of github.com/ansible/awx); each docstring names the
file. The messages are AWX's own strings, since callers compare them with what AWX answers.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, sandbox
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

ENCRYPTED = "$encrypted$"

# awx/main/constants.py (24.6.1): SURVEY_TYPE_MAPPING
SURVEY_TYPE_MAPPING = {
    "text": str,
    "textarea": str,
    "password": str,
    "multiplechoice": str,
    "multiselect": str,
    "integer": int,
    "float": (float, int),
}

# awx/main/constants.py (24.6.1): ENV_BLOCKLIST
ENV_BLOCKLIST = frozenset(
    (
        "VIRTUAL_ENV",
        "PATH",
        "PYTHONPATH",
        "JOB_ID",
        "INVENTORY_ID",
        "INVENTORY_SOURCE_ID",
        "INVENTORY_UPDATE_ID",
        "AD_HOC_COMMAND_ID",
        "REST_API_URL",
        "REST_API_TOKEN",
        "MAX_EVENT_RES",
        "CALLBACK_QUEUE",
        "CALLBACK_CONNECTION",
        "CACHE",
        "JOB_CALLBACK_DEBUG",
        "INVENTORY_HOSTVARS",
        "AWX_HOST",
        "PROJECT_REVISION",
        "SUPERVISOR_CONFIG_PATH",
    )
)


# ---------------------------------------------------------------------------------------------------------------------
# Survey specs: awx/api/views/__init__.py (24.6.1), JobTemplateSurveySpec._validate_spec_data
# ---------------------------------------------------------------------------------------------------------------------


def survey_spec_errors(spec: dict, old_spec: dict | None = None) -> list[str]:
    """AWX's 400 message for a survey spec POSTed to .../survey_spec/, as a list of one; empty when AWX accepts it.

    From awx/api/views/__init__.py (AWX 24.6.1), JobTemplateSurveySpec._validate_spec_data: AWX stops at the first
    problem it finds and answers {"error": message}. old_spec is the spec stored before, which decides whether a
    password default of $encrypted$ may keep the old value.
    """
    if not isinstance(spec, dict):
        return ["Expected {} for field '{}', received {} type.".format("dict", "spec", type(spec).__name__)]
    schema_error = _survey_schema_error(spec)
    if schema_error:
        return [schema_error]
    old_by_variable = pivot_spec(old_spec or {})
    seen: set = set()
    for idx, item in enumerate(spec["spec"]):
        error = _survey_item_error(idx, item, seen, old_by_variable)
        if error:
            return [error]
    return []


def pivot_spec(spec: dict) -> dict:
    """The questions of a spec keyed by variable (awx/main/models/mixins.py 24.6.1, pivot_spec)."""
    return {item["variable"]: item for item in spec.get("spec", []) if isinstance(item, dict) and "variable" in item}


def _survey_schema_error(spec: dict) -> str | None:
    # AWX overwrites one 'error' key, so the last failing check of the loop is the one reported.
    error = None
    for field, expect_type, type_label in (
        ("name", str, "string"),
        ("description", str, "string"),
        ("spec", list, "list of items"),
    ):
        if field not in spec:
            error = f"Field '{field}' is missing from survey spec."
        elif not isinstance(spec[field], expect_type):
            error = f"Expected {type_label} for field '{field}', received {type(spec[field]).__name__} type."
    if isinstance(spec.get("spec"), list) and len(spec["spec"]) < 1:
        error = "'spec' doesn't contain any items."
    return error


def _survey_item_error(idx: int, item: Any, seen: set, old_by_variable: dict) -> str | None:
    if not isinstance(item, dict):
        return "Survey question %s is not a json object." % idx
    return (
        _required_keys_error(idx, item)
        or _duplicate_variable_error(idx, item, seen)
        or _question_type_error(idx, item)
        or _default_type_error(idx, item)
        or _min_max_error(idx, item)
        or _choices_error(idx, item)
        or _encrypted_default_error(idx, item, old_by_variable)
    )


def _required_keys_error(idx: int, item: dict) -> str | None:
    for field_name in ("type", "question_name", "variable", "required"):
        if field_name not in item:
            return f"'{field_name}' missing from survey question {idx}"
        allow_types, type_label = (bool, "boolean") if field_name == "required" else (str, "string")
        if not isinstance(item[field_name], allow_types):
            return f"'{field_name}' in survey question {idx} expected to be {type_label}."
    return None


def _duplicate_variable_error(idx: int, item: dict, seen: set) -> str | None:
    if item["variable"] in seen:
        return "'variable' '%s' duplicated in survey question %s." % (item["variable"], idx)
    seen.add(item["variable"])
    return None


def _question_type_error(idx: int, item: dict) -> str | None:
    if item["type"] not in SURVEY_TYPE_MAPPING:
        return "'{}' in survey question {} is not one of '{}' allowed question types.".format(
            item["type"], idx, ", ".join(SURVEY_TYPE_MAPPING)
        )
    return None


def _default_type_error(idx: int, item: dict) -> str | None:
    qtype = item["type"]
    if "default" in item and item["default"] != "" and not isinstance(item["default"], SURVEY_TYPE_MAPPING[qtype]):
        type_label = qtype if qtype in ("integer", "float") else "string"
        return "Default value {} in survey question {} expected to be {}.".format(item["default"], idx, type_label)
    return None


def _min_max_error(idx: int, item: dict) -> str | None:
    for key in ("min", "max"):
        if key in item and item[key] is not None and not isinstance(item[key], int):
            return f"The {key} limit in survey question {idx} expected to be integer."
    return None


def _choice_lines(value: str) -> list[str]:
    return [choice for choice in value.splitlines() if choice.strip() != ""]


def _choices_error(idx: int, item: dict) -> str | None:
    qtype = item["type"]
    if qtype not in ("multiselect", "multiplechoice"):
        return None
    if "choices" not in item:
        return f"Survey question {idx} of type {qtype} must specify choices."
    choices = item["choices"]
    if isinstance(choices, str):
        choices = "\n".join(_choice_lines(choices))
    if "default" not in item:
        return None
    default = item["default"]
    defaults = _choice_lines(default) if isinstance(default, str) else default
    if qtype == "multiplechoice" and len(defaults) > 1:
        return "Multiple Choice (Single Select) can only have one default value."
    # AWX tests membership against the choices as given: a substring test when choices is a string.
    if any(choice not in choices for choice in defaults):
        return "Default choice must be answered from the choices listed."
    return None


def _encrypted_default_error(idx: int, item: dict, old_by_variable: dict) -> str | None:
    default = item.get("default")
    if not (isinstance(default, str) and default.startswith(ENCRYPTED)):
        return None
    if item["type"] != "password":
        return (
            "$encrypted$ is a reserved keyword for password question defaults, survey question {} is type {}.".format(
                idx, item["type"]
            )
        )
    old_default = old_by_variable.get(item["variable"], {}).get("default")
    if not (isinstance(old_default, str) and (old_default.startswith(ENCRYPTED) or old_default == "")):
        return f"$encrypted$ is a reserved keyword, may not be used for new default in position {idx}."
    return None


def normalize_survey_spec(spec: dict, old_spec: dict | None = None) -> dict:
    """The spec as AWX stores it once accepted (awx/api/views/__init__.py 24.6.1, _validate_spec_data's rewrites).

    Multiple choice strings lose their blank lines, and a password default of $encrypted$ keeps the stored default.
    Password defaults stay in clear here (AWX encrypts them); display_survey_spec hides them.
    """
    stored = copy.deepcopy(spec)
    old_by_variable = pivot_spec(old_spec or {})
    for item in stored.get("spec", []):
        if item.get("type") in ("multiselect", "multiplechoice"):
            for key in ("choices", "default"):
                if isinstance(item.get(key), str):
                    item[key] = "\n".join(_choice_lines(item[key]))
        default = item.get("default")
        if item.get("type") == "password" and isinstance(default, str) and default.startswith(ENCRYPTED):
            item["default"] = old_by_variable[item["variable"]]["default"]
    return stored


def display_survey_spec(spec: dict) -> dict:
    """The spec GET .../survey_spec/ answers: non-empty password defaults shown as $encrypted$.

    From awx/main/models/mixins.py (AWX 24.6.1), SurveyJobTemplateMixin.display_survey_spec.
    """
    shown = copy.deepcopy(spec) if spec else {}
    for item in shown.get("spec", []):
        if item.get("type") == "password" and item.get("default"):
            item["default"] = ENCRYPTED
    return shown


# ---------------------------------------------------------------------------------------------------------------------
# Survey answers at launch: awx/main/models/mixins.py (24.6.1), SurveyJobTemplateMixin
# ---------------------------------------------------------------------------------------------------------------------


def survey_answer_errors(spec: dict, answers: dict) -> list[str]:
    """AWX's launch messages for survey answers (its 'variables_needed_to_start'); empty when AWX accepts them.

    From awx/main/models/mixins.py (AWX 24.6.1): _accept_or_ignore_variables runs _survey_element_validation on each
    question, in order, against the whole answer dict. Variables outside the survey are not judged here (AWX refuses
    them separately unless ask_variables_on_launch is set).
    """
    errors: list[str] = []
    for element in spec.get("spec", []):
        errors += survey_element_errors(element, answers)
    return errors


def survey_element_errors(element: dict, data: dict, validate_required: bool = True) -> list[str]:
    """One question's messages (awx/main/models/mixins.py 24.6.1, SurveyJobTemplateMixin._survey_element_validation)."""
    variable = element["variable"]
    if element["type"] == "password" and data.get(variable) == ENCRYPTED:
        # The placeholder means "keep the default": only a required question without a default fails.
        missing = element.get("default") is None and element["required"] and validate_required
        return ["'%s' value missing" % variable] if missing else []
    if variable not in data:
        return ["'%s' value missing" % variable] if element["required"] and validate_required else []
    checker = _ANSWER_CHECKERS.get(element["type"])
    return checker(element, variable, data[variable]) if checker else []


def _limit(element: dict, key: str) -> Any:
    value = element.get(key)
    return None if value in ("", None) else value


def _text_answer_errors(element: dict, variable: str, value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["Value %s for '%s' expected to be a string." % (value, variable)]
    errors = []
    low, high = _limit(element, "min"), _limit(element, "max")
    if low is not None and len(value) < int(low):
        errors.append(
            "'%s' value %s is too small (length is %s must be at least %s)." % (variable, value, len(value), low)
        )
    if high is not None and len(value) > int(high):
        errors.append("'%s' value %s is too large (must be no more than %s)." % (variable, value, high))
    return errors


def _number_answer_errors(element: dict, variable: str, value: Any) -> list[str]:
    # bool is an int to isinstance, not to AWX's type check.
    if element["type"] == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return ["Value %s for '%s' expected to be an integer." % (value, variable)]
    if element["type"] == "float" and type(value) not in (float, int):
        return ["Value %s for '%s' expected to be a numeric type." % (value, variable)]
    cast = int if element["type"] == "integer" else float
    errors = []
    low, high = _limit(element, "min"), _limit(element, "max")
    if low is not None and value < cast(low):
        errors.append("'%s' value %s is too small (must be at least %s)." % (variable, value, low))
    if high is not None and value > cast(high):
        errors.append("'%s' value %s is too large (must be no more than %s)." % (variable, value, high))
    return errors


def _choice_list(element: dict) -> list:
    choices = copy.copy(element["choices"])
    return _choice_lines(choices) if isinstance(choices, str) else choices


def _multiselect_answer_errors(element: dict, variable: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["'%s' value is expected to be a list." % variable]
    choices = _choice_list(element)
    return [
        "Value %s for '%s' expected to be one of %s." % (val, variable, choices) for val in value if val not in choices
    ]


def _multiplechoice_answer_errors(element: dict, variable: str, value: Any) -> list[str]:
    choices = _choice_list(element)
    return [] if value in choices else ["Value %s for '%s' expected to be one of %s." % (value, variable, choices)]


_ANSWER_CHECKERS = {
    "text": _text_answer_errors,
    "textarea": _text_answer_errors,
    "password": _text_answer_errors,
    "integer": _number_answer_errors,
    "float": _number_answer_errors,
    "multiselect": _multiselect_answer_errors,
    "multiplechoice": _multiplechoice_answer_errors,
}


def survey_extra_vars(spec: dict, answers: dict) -> dict:
    """The extra vars AWX gives a launched job: valid survey defaults, overridden by the answers.

    From awx/main/models/mixins.py (AWX 24.6.1), SurveyJobTemplateMixin._update_unified_job_kwargs (template
    extra_vars left out): a question's default applies only when it is not None and passes the question's own
    validation (so an empty password default with a min length is dropped), and a password answered with
    $encrypted$ falls back to the default. Password defaults are taken in clear, as AWX decrypts them for the job.
    """
    runtime = dict(answers)
    defaults = {}
    for element in spec.get("spec", []):
        variable, default = element.get("variable"), element.get("default")
        if element.get("type") == "password" and runtime.get(variable) == ENCRYPTED:
            runtime.pop(variable)
        if default is not None and not survey_element_errors(element, {variable: default}):
            defaults[variable] = default
    defaults.update(runtime)
    return defaults


# ---------------------------------------------------------------------------------------------------------------------
# Credential types: awx/main/fields.py (24.6.1), CredentialTypeInputField and CredentialTypeInjectorField
# ---------------------------------------------------------------------------------------------------------------------

_INPUTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["string", "boolean"]},
                    "format": {"enum": ["ssh_private_key", "url"]},
                    "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                    "id": {
                        "type": "string",
                        "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$",
                        "error": "{instance} is an invalid variable name",
                    },
                    "label": {"type": "string"},
                    "help_text": {"type": "string"},
                    "multiline": {"type": "boolean"},
                    "secret": {"type": "boolean"},
                    "ask_at_runtime": {"type": "boolean"},
                    "default": {},
                },
                "additionalProperties": False,
                "required": ["id", "label"],
            },
        },
    },
}

_INJECTORS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file": {
            "type": "object",
            "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}},
            "additionalProperties": False,
        },
        "env": {
            "type": "object",
            "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7f]*$"}},
            "additionalProperties": False,
        },
        "extra_vars": {
            "type": "object",
            "patternProperties": {
                r"^[a-zA-Z_\{\}]+[a-zA-Z0-9_\{\}]*$": {
                    "anyOf": [{"type": "string"}, {"type": "array"}, {"$ref": "#/properties/extra_vars"}]
                }
            },
            "additionalProperties": False,
        },
    },
}


def _enum_message(validator, enums, instance, schema):
    # AWX swaps jsonschema's enum message for its own (awx/main/fields.py __enum_validate__).
    if instance not in enums:
        yield jsonschema.exceptions.ValidationError("'{}' is not one of ['{}']".format(instance, "', '".join(enums)))


_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"enum": _enum_message})


def _schema_messages(value: Any, schema: dict) -> list[str]:
    """jsonschema errors reworded as AWX's JSONSchemaField.validate does (awx/main/fields.py 24.6.1)."""
    messages = []
    for error in _Validator(schema).iter_errors(value):
        message = error.message
        if error.validator == "pattern" and "error" in error.schema:
            message = error.schema["error"].format(instance=error.instance)
        elif error.validator == "type":
            expected = "dict" if error.validator_value == "object" else error.validator_value
            if error.path:
                message = (
                    f"{type(error.instance).__name__} provided in relative path {list(error.path)}, expected {expected}"
                )
            else:
                message = f"{type(error.instance).__name__} provided, expected {expected}"
        elif error.validator == "additionalProperties":
            message = f"Schema validation error in relative path {list(error.path)} ({error.message})"
        messages.append(message)
    return messages


def credential_type_input_errors(inputs: Any) -> list[str]:
    """Messages for a custom credential type's inputs (awx/main/fields.py 24.6.1, CredentialTypeInputField.validate)."""
    if isinstance(inputs, dict) and "dependencies" in inputs:
        return ["'dependencies' is not supported for custom credentials."]
    messages = _schema_messages(inputs, _INPUTS_SCHEMA)
    if messages:
        return messages
    seen: set = set()
    for field in inputs.get("fields", []):
        error = _input_field_error(field, seen)
        if error:
            return [error]
    return []


def _input_field_error(field: dict, seen: set) -> str | None:
    field_id = field.get("id")
    if field_id == "tower":
        return '"tower" is a reserved field name'
    if field_id in seen:
        return "field IDs must be unique (%s)" % field_id
    seen.add(field_id)
    field_type = field.get("type", "string")
    if "default" in field and not isinstance(field["default"], {"string": str, "boolean": bool}[field_type]):
        return "{} is not a {}".format(field["default"], field_type)
    for key in ("choices", "multiline", "format", "secret"):
        if key in field and field_type != "string":
            return f"{key} not allowed for {field_type} type ({field_id})"
    return None


def env_var_error(name: str) -> str | None:
    """Why AWX refuses an injected env var, or None (CredentialTypeInjectorField.validate_env_var_allowed, 24.6.1)."""
    if name.startswith("ANSIBLE_"):
        return f"Environment variable {name} may affect Ansible configuration so its use is not allowed in credentials."
    if name in ENV_BLOCKLIST:
        return f"Environment variable {name} is not allowed to be used in credentials."
    return None


class _FilenameNamespace:
    """Stands for tower.filename when no unnamed file injector exists: rendering it is an error."""

    def __str__(self):
        raise UndefinedError("Must define unnamed file injector in order to reference `tower.filename`.")


class _TowerNamespace:
    """The reserved `tower` namespace of injector templates (AWX 24.6.1 knows no `awx` namespace here)."""

    def __init__(self):
        self.filename = _FilenameNamespace()

    def __str__(self):
        raise UndefinedError("Cannot directly reference reserved `tower` namespace container.")


def _template_namespace(inputs: dict, injectors: dict) -> dict:
    namespace: dict = {field.get("id"): "EXAMPLE" for field in inputs.get("fields", [])}
    tower = _TowerNamespace()
    names = [name for name in injectors.get("file", {}) if name.startswith("template")]
    if "template" in names:
        tower.filename = "EXAMPLE_FILENAME"
    else:
        for name in names:
            setattr(tower.filename, name.split(".")[1], "EXAMPLE_FILENAME")
    namespace["tower"] = tower
    return namespace


def _template_error(namespace: dict, type_: str, key: str, template: str) -> str | None:
    env = sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    try:
        env.from_string(template).render(namespace)
    except UndefinedError as e:
        return f"{key} uses an undefined field ({e})"
    except SecurityError as e:
        return f"Encountered unsafe code execution: {e}"
    except TemplateSyntaxError as e:
        return f"Syntax error rendering template for {key} inside of {type_} ({e})"
    return None


def _extra_vars_errors(namespace: dict, key: str | None, node: Any) -> str | None:
    if isinstance(node, dict):
        for sub_key, value in node.items():
            error = _template_error(namespace, "extra_vars", "a key" if key is None else key, sub_key)
            error = error or _extra_vars_errors(namespace, sub_key if key is None else f"{key}.{sub_key}", value)
            if error:
                return error
    elif isinstance(node, list):
        for i, value in enumerate(node):
            error = _extra_vars_errors(namespace, f"{key}[{i}]", value)
            if error:
                return error
    else:
        return _template_error(namespace, "extra_vars", key, node)
    return None


def credential_type_injector_errors(inputs: Any, injectors: Any) -> list[str]:
    """Messages for a credential type's injectors (awx/main/fields.py 24.6.1, CredentialTypeInjectorField.validate).

    Only file (template or template.<name>), env and extra_vars are allowed; env names starting ANSIBLE_ or in
    ENV_BLOCKLIST are refused; every template is rendered in a sandbox where only the inputs' field ids and
    tower.filename exist. When the inputs are invalid AWX skips the template checks.
    """
    messages = _schema_messages(injectors, _INJECTORS_SCHEMA)
    if messages:
        return messages
    if credential_type_input_errors(inputs):
        return []
    namespace = _template_namespace(inputs, injectors)
    names = [name for name in injectors.get("file", {}) if name.startswith("template")]
    if "template" in names and len(names) > 1:
        return ["Must use multi-file syntax when injecting multiple files"]
    for type_, injector in injectors.items():
        error = _injector_error(namespace, type_, injector)
        if error:
            return [error]
    return []


def _injector_error(namespace: dict, type_: str, injector: dict) -> str | None:
    if type_ == "env":
        for name in injector:
            if env_var_error(name):
                return env_var_error(name)
    if type_ == "extra_vars":
        return _extra_vars_errors(namespace, None, injector)
    for key, template in injector.items():
        error = _template_error(namespace, type_, key, template)
        if error:
            return error
    return None


def credential_type_errors(inputs: dict, injectors: dict) -> dict[str, list[str]]:
    """AWX's 400 body for a custom credential type, field name -> messages; empty when AWX accepts it.

    From awx/main/fields.py (CredentialTypeInputField, CredentialTypeInjectorField) run by full_clean, and
    awx/api/serializers.py CredentialTypeSerializer.validate (ask_at_runtime), AWX 24.6.1.
    """
    errors: dict[str, list[str]] = {}
    input_messages = credential_type_input_errors(inputs)
    if input_messages:
        errors["inputs"] = input_messages
    injector_messages = credential_type_injector_errors(inputs, injectors)
    if injector_messages:
        errors["injectors"] = injector_messages
    if not errors and any(field.get("ask_at_runtime", False) for field in inputs.get("fields", [])):
        errors["inputs"] = ["'ask_at_runtime' is not supported for custom credentials."]
    return errors


# ---------------------------------------------------------------------------------------------------------------------
# Project playbooks: awx/main/utils/ansible.py and awx/main/models/projects.py (24.6.1)
# ---------------------------------------------------------------------------------------------------------------------

_PLAYBOOK_LINE = re.compile(
    r"^\s*?-?\s*?(?:hosts|(ansible\.builtin\.)?include|(ansible\.builtin\.)?import_playbook):\s*?.*?$"
)


def skip_directory(relative_directory: str) -> bool:
    """Directories AWX never lists playbooks from (awx/main/utils/ansible.py 24.6.1, skip_directory)."""
    parts = relative_directory.split("/")
    if {"roles", "tasks", "group_vars", "host_vars"} & set(parts):
        return True
    return any(part.startswith(".") and part != "." for part in parts)


def could_be_playbook(path: str) -> bool:
    """A .yml/.yaml file with a hosts/include/import_playbook line, or vaulted (awx/main/utils/ansible.py 24.6.1)."""
    if not path.endswith((".yml", ".yaml")):
        return False
    try:
        with open(path, encoding="utf-8", errors="ignore") as handle:
            for n, line in enumerate(handle):
                if _PLAYBOOK_LINE.match(line) or (n == 0 and line.startswith("$ANSIBLE_VAULT;")):
                    return True
    except OSError:
        return False
    return False


def project_playbooks(project_dir: str) -> list[str]:
    """The playbooks AWX lists for a project checked out at project_dir (Project.playbooks, projects.py 24.6.1).

    AWX tests skip_directory on the absolute path under /var/lib/awx/projects; here it is tested on the path relative
    to the project, so that a checkout under a dot directory (.build/...) is still listed as AWX would list it.
    """
    found = []
    for dirpath, _dirnames, filenames in os.walk(project_dir):
        if skip_directory(os.path.relpath(dirpath, project_dir)):
            continue
        for filename in filenames:
            if could_be_playbook(os.path.join(dirpath, filename)):
                found.append(os.path.relpath(os.path.join(dirpath, filename), project_dir))
    return sorted(found, key=str.lower)
