"""The ray_dashboard doc fragment documents exactly the options RAY_DASHBOARD_ARGUMENT_SPEC gives the Serve modules."""

from __future__ import annotations

import yaml

from ansible_collections.llmops.ray_vllm.plugins.doc_fragments.ray_dashboard import ModuleDocFragment
from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import (
    KUBERNETES_SERVICE_ARGUMENT_SPEC,
    RAY_DASHBOARD_ARGUMENT_SPEC,
    with_ray_dashboard,
)


def test_fragment_mirrors_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(documented) == set(RAY_DASHBOARD_ARGUMENT_SPEC)
    for name, spec in RAY_DASHBOARD_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"]
        assert documented[name].get("default") == spec.get("default")


def test_with_ray_dashboard_adds_the_dashboard_and_service_options_without_touching_the_original():
    spec = {"name": {"type": "str"}}
    merged = with_ray_dashboard(spec)
    assert set(merged) == {"name"} | set(RAY_DASHBOARD_ARGUMENT_SPEC) | set(KUBERNETES_SERVICE_ARGUMENT_SPEC)
    assert spec == {"name": {"type": "str"}}
