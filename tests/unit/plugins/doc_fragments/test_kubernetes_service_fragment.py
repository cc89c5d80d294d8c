"""The kubernetes_service doc fragment documents exactly the options KUBERNETES_SERVICE_ARGUMENT_SPEC adds."""

from __future__ import annotations

import yaml

from ansible_collections.llmops.ray_vllm.plugins.doc_fragments.kubernetes_service import ModuleDocFragment
from ansible_collections.llmops.ray_vllm.plugins.module_utils._args import (
    KUBERNETES_SERVICE_ARGUMENT_SPEC,
    with_kubernetes_service,
)


def test_fragment_mirrors_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(documented) == set(KUBERNETES_SERVICE_ARGUMENT_SPEC)
    for name, spec in KUBERNETES_SERVICE_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"]
        assert documented[name].get("default") == spec.get("default")
    suboptions = documented["service"]["suboptions"]
    for name, spec in KUBERNETES_SERVICE_ARGUMENT_SPEC["service"]["options"].items():
        assert suboptions[name]["type"] == spec["type"]
        assert bool(suboptions[name].get("required")) == bool(spec.get("required"))
    assert set(suboptions) == set(KUBERNETES_SERVICE_ARGUMENT_SPEC["service"]["options"])


def test_with_kubernetes_service_adds_the_options_without_touching_the_original():
    spec = {"url": {"type": "str"}}
    assert set(with_kubernetes_service(spec)) == {"url", "service", "kubeconfig", "context"}
    assert spec == {"url": {"type": "str"}}
