"""The shipped least-privilege manifests, retargeted to other namespaces and subjects (playbooks/rbac.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._rbac_manifests import RbacManifestError, rbac_manifests

SHIPPED = Path(__file__).resolve().parents[4] / "docs" / "rbac" / "least-privilege.yaml"
NAMESPACES = {"llm": "serving", "gpu-operator": "nvidia", "kuberay-system": "ray-system"}


def _docs():
    return yaml.safe_load(SHIPPED.read_text())["items"]


def test_a_service_account_subject():
    subject = {"kind": "ServiceAccount", "name": "ci", "namespace": "serving"}
    out = rbac_manifests(_docs(), NAMESPACES, subject)
    assert out[0] == {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci", "namespace": "serving"}}
    assert {o["metadata"].get("namespace") for o in out} == {"serving", "nvidia", "ray-system", None}
    bindings = [o for o in out if o["kind"].endswith("Binding")]
    assert len(bindings) == 4 and all(b["subjects"] == [subject] for b in bindings)
    assert _docs()[1]["metadata"]["namespace"] == "llm"  # the input is not changed


def test_a_user_subject_makes_no_service_account():
    out = rbac_manifests(_docs(), NAMESPACES, {"kind": "User", "name": "alice"})
    assert "ServiceAccount" not in {o["kind"] for o in out}
    subjects = [o["subjects"] for o in out if "subjects" in o]
    assert subjects and all(
        s == [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}] for s in subjects
    )


def test_an_unmapped_namespace_is_refused():
    with pytest.raises(RbacManifestError, match="namespace 'llm'"):
        rbac_manifests(_docs(), {"gpu-operator": "g"}, {"kind": "User", "name": "a"})
