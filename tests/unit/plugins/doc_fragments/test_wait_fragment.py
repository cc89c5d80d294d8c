"""The wait doc fragment documents exactly the options WAIT_ARGUMENT_SPEC gives every gate module."""

from __future__ import annotations

import yaml

from ansible_collections.llmops.ray_vllm.plugins.doc_fragments.wait import ModuleDocFragment
from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import WAIT_ARGUMENT_SPEC, with_wait


def test_fragment_mirrors_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(documented) == set(WAIT_ARGUMENT_SPEC)
    for name, spec in WAIT_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"]
        assert documented[name]["default"] == spec["default"]


def test_with_wait_adds_the_options_without_touching_the_original():
    spec = {"url": {"type": "str"}}
    merged = with_wait(spec)
    assert set(merged) == {"url", "wait", "timeout", "interval"}
    assert spec == {"url": {"type": "str"}}
