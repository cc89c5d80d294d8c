"""Every role's meta/argument_specs.yml matches its defaults/main.yml: the same variables, the same defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def test_the_roles_are_found():
    assert {"cuda_check", "model_storage", "ray_cluster", "vllm_serve", "gpu_operator", "kuberay_operator"} <= set(
        ROLE_NAMES
    )


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_and_argument_specs_agree(role):
    defaults = load(ROLES / role / "defaults" / "main.yml")
    options = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options), "variables in only one of defaults/argument_specs: %s" % sorted(
        set(defaults) ^ set(options)
    )
    for name, spec in options.items():
        assert name.startswith(role + "_"), "%s is not prefixed with the role name" % name
        assert spec.get("description"), "%s has no description" % name
        value = defaults[name]
        templated = isinstance(value, str) and "{{" in value
        if "default" in spec:
            assert spec["default"] == value, "%s: argument_specs default %r, defaults/main.yml %r" % (
                name,
                spec["default"],
                value,
            )
        else:
            # Only null defaults and templated ones (computed per host) may go without a documented default.
            assert value is None or templated, "%s has default %r but argument_specs documents none" % (name, value)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_role_starts_with_its_preflight(role):
    tasks = load(ROLES / role / "tasks" / "main.yml")
    first = tasks[0]
    # Included where site.yml turns it off (<role>_preflight: false, it ran the preflight first): one skipped task
    # instead of each of the file's own.
    assert (first.get("ansible.builtin.include_tasks") or first.get("ansible.builtin.import_tasks")) == "preflight.yml"
    assert first.get("when") in (None, "%s_preflight | bool" % role), first
    assert (ROLES / role / "tasks" / "preflight.yml").exists()
