"""Every filter and test plugin has its documentation (plugins/<kind>/<name>.yml), named as it is registered.

ansible-test sanity's ansible-doc test renders each of them; this test makes sure none is missing or misnamed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
KINDS = {"filter": ("FilterModule", "filters"), "test": ("TestModule", "tests")}


def registered(kind):
    cls_name, method = KINDS[kind]
    names = {}
    for path in sorted((PLUGINS / kind).glob("*.py")):
        module = importlib.import_module(f"ansible_collections.llmops.ray_vllm.plugins.{kind}.{path.stem}")
        for name in getattr(getattr(module, cls_name)(), method)():
            names[name] = path.name
    return names


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_plugin_is_documented_under_its_own_name(kind):
    names = registered(kind)
    docs = {path.stem: path for path in (PLUGINS / kind).glob("*.yml")}
    assert set(names) == set(docs), "registered without docs: %s; docs without plugin: %s" % (
        sorted(set(names) - set(docs)),
        sorted(set(docs) - set(names)),
    )
    for name, path in docs.items():
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        documentation = data["DOCUMENTATION"]
        assert documentation["name"] == name
        assert documentation["short_description"] and documentation["description"]
        assert "_input" in documentation["options"] and data["RETURN"]["_value"]["description"]
        assert "llmops.ray_vllm." + name in data["EXAMPLES"]
