"""Every role's public interface is exactly its meta/argument_specs.yml (plus the facts its README says it sets).

What a role reads or sets is found by parsing every Jinja expression in its tasks, templates and vars:

- a variable the role reads without a leading underscore is one of its documented options (or an output it set
  itself, or one of Ansible's own variables): a role never reads another role's variables or a global flag;
- what a role sets (set_fact, register, task and block vars, vars/main.yml) is private: ``_<role>_*`` for facts and
  vars, ``__<role>_*`` for registered results (prometheus.prometheus's convention), unless the README lists it under
  "Facts it sets";
- a private name of one role never appears in another.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())

# Ansible's own variables and the names its templating provides.
ANSIBLE_NAMES = {
    "ansible_check_mode",
    "ansible_diff_mode",
    "ansible_facts",
    "ansible_failed_result",
    "ansible_failed_task",
    "ansible_host",
    "ansible_play_batch",
    "ansible_play_hosts",
    "ansible_play_hosts_all",
    "ansible_python_interpreter",
    "groups",
    "hostvars",
    "inventory_hostname",
    "item",
    "lookup",
    "now",
    "omit",
    "q",
    "query",
    "role_path",
    "undef",
    "none",
    "true",
    "false",
    "range",
    "dict",
    "namespace",
    "lipsum",
    "cycler",
    "joiner",
}
# Keys whose string value is a bare Jinja expression rather than a template.
CONDITION_KEYS = {"when", "until", "failed_when", "changed_when", "that"}
TASK_FILE_GLOBS = ("tasks/*.yml", "handlers/*.yml")


class _AnyName(dict):
    """Filters and tests by any name: the scan parses Ansible's templates without Ansible's plugins."""

    def __contains__(self, name):
        return True

    def __missing__(self, name):
        return _any_plugin

    def get(self, name, default=None):
        return self[name]


def _any_plugin(*args, **kwargs):
    return None


ENVIRONMENT = jinja2.Environment()
ENVIRONMENT.filters = _AnyName(ENVIRONMENT.filters)
ENVIRONMENT.tests = _AnyName(ENVIRONMENT.tests)


class Unsafe(str):
    """A string tagged !unsafe: Ansible never templates it (e.g. AWX's injector templates), so it reads nothing."""


class RoleLoader(yaml.SafeLoader):
    pass


RoleLoader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=RoleLoader)


def names_in_template(text):
    try:
        return set(jinja2.meta.find_undeclared_variables(ENVIRONMENT.parse(text)))
    except jinja2.TemplateSyntaxError as error:
        raise AssertionError(f"cannot parse {text!r}: {error}") from None


def names_in_expression(text):
    return names_in_template("{{ %s }}" % text)


class RoleScan:
    """The names one role reads and sets, with where each was seen."""

    def __init__(self, role):
        self.role = role
        self.reads = {}
        self.sets = {}

    def read(self, names, where):
        for name in names:
            self.reads.setdefault(name, where)

    def define(self, name, kind, where):
        self.sets.setdefault(name, (kind, where))

    def scan_value(self, value, where, condition=False):
        if isinstance(value, Unsafe):
            return
        if isinstance(value, str):
            if condition and "{{" not in value:
                self.read(names_in_expression(value), where)
            elif "{{" in value or "{%" in value:
                self.read(names_in_template(value), where)
        elif isinstance(value, list):
            for entry in value:
                self.scan_value(entry, where, condition)
        elif isinstance(value, dict):
            for key, entry in value.items():
                self.scan_value(entry, where, condition or key in CONDITION_KEYS)

    def scan_task(self, task, where):
        for key, value in task.items():
            if key in ("block", "rescue", "always"):
                for child in value or []:
                    self.scan_task(child, where)
                continue
            if key == "register":
                self.define(value, "register", where)
                continue
            if key == "vars":
                # Options handed to an included role at its call site are that role's, not this one's.
                included = (task.get("ansible.builtin.include_role") or task.get("include_role") or {}).get("name")
                for name in value:
                    self.define(name, "role_vars:" + included.split(".")[-1] if included else "vars", where)
            if key == "loop_control":
                for name_key in ("loop_var", "index_var"):
                    if name_key in value:
                        self.define(value[name_key], "loop_var", where)
            if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                for name in value:
                    if name != "cacheable":
                        self.define(name, "set_fact", where)
            self.scan_value(value, where, condition=key in CONDITION_KEYS)


def scan_role(role):
    scan = RoleScan(role)
    base = ROLES / role
    for pattern in TASK_FILE_GLOBS:
        for path in sorted(base.glob(pattern)):
            for task in load_yaml(path) or []:
                scan.scan_task(task, str(path.relative_to(ROOT)))
    for path in sorted(base.glob("templates/*")):
        scan.read(names_in_template(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    vars_file = base / "vars" / "main.yml"
    if vars_file.exists():
        for name, value in (load_yaml(vars_file) or {}).items():
            scan.define(name, "vars", str(vars_file.relative_to(ROOT)))
            scan.scan_value(value, str(vars_file.relative_to(ROOT)))
    return scan


def spec_options(role):
    return set(load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"])


def documented_outputs(role):
    """Names in the README's "Facts it sets" section (a table whose first column holds `name`)."""
    text = (ROLES / role / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Facts it sets\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        return set()
    return set(re.findall(r"^\|\s*`([a-z_]+)`", match.group(1), re.M))


def private_prefixes(role):
    return ("_%s_" % role, "__%s_" % role)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_a_role_reads_only_its_options_its_own_internals_and_ansible(role):
    scan = scan_role(role)
    allowed = spec_options(role) | documented_outputs(role) | ANSIBLE_NAMES | set(scan.sets)
    strays = {name: where for name, where in scan.reads.items() if name not in allowed}
    assert not strays, f"{role} reads variables outside its interface: {strays}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_what_a_role_sets_is_private_or_a_documented_output(role):
    scan = scan_role(role)
    outputs = documented_outputs(role)
    facts_prefix, register_prefix = private_prefixes(role)
    wrong = {}
    for name, (kind, where) in scan.sets.items():
        if name in outputs or (kind == "vars" and name.startswith("ansible_")):
            # Connection variables (ansible_python_interpreter ...) are Ansible's to read, set per task.
            continue
        if kind.startswith("role_vars:"):
            if name in spec_options(kind.split(":", 1)[1]):
                # An included role's documented option, set at the call site.
                continue
            kind = "vars"
        if kind == "register" and not name.startswith(register_prefix):
            wrong[name] = f"{kind} in {where}: name it {register_prefix}..."
        elif kind in ("set_fact", "vars") and not (name.startswith(facts_prefix) and not name.startswith("__")):
            wrong[name] = f"{kind} in {where}: name it {facts_prefix}..."
    assert not wrong, f"{role} sets names that are neither private nor documented outputs: {wrong}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_documented_outputs_are_set_by_the_role(role):
    scan = scan_role(role)
    missing = documented_outputs(role) - {
        name for name, (kind, where) in scan.sets.items() if kind == "set_fact" and where
    }
    assert not missing, f"{role}'s README lists facts the role never sets: {missing}"


def test_no_role_touches_another_roles_private_names():
    found = []
    for role in ROLE_NAMES:
        scan = scan_role(role)
        for name in set(scan.reads) | set(scan.sets):
            for other in ROLE_NAMES:
                if other != role and name.lstrip("_").startswith(other + "_") and name.startswith("_"):
                    found.append((role, name))
    assert not found, found


def test_the_scanner_sees_reads_sets_and_conditions():
    scan = RoleScan("demo")
    scan.scan_task(
        {
            "name": "x",
            "when": "demo_a | bool and other_b",
            "ansible.builtin.set_fact": {"_demo_c": "{{ demo_d }}"},
            "register": "__demo_e",
            "vars": {"_demo_f": "{% for x in demo_g %}{{ x }}{% endfor %}"},
        },
        "here",
    )
    assert {"demo_a", "other_b", "demo_d", "demo_g"} <= set(scan.reads)
    assert "x" not in scan.reads
    assert {"_demo_c": ("set_fact", "here"), "__demo_e": ("register", "here"), "_demo_f": ("vars", "here")} == (
        scan.sets
    )
