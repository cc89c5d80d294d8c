# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed's KubeRay CRDs equal KubeRay v1.7.0's, field for field, proven without keeping the release's text.

crd_fields.py (tests/k8s_testbed/crds) turns a CRD into its canonical field list: one sorted line per schema node
(its JSON path, type, format, required, enum, default, nullable, bounds, patterns, anyOf and x-kubernetes-*
markers), per version (served, storage, deprecation, subresources, printer columns) and for the CRD itself (group,
names, scope); descriptions are left out (v1.7.0's CRDs have none: controller-gen ran with maxDescLen=0). The
expected hashes below were computed once from the release, tag v1.7.0 (commit KUBERAY_COMMIT), with:

    for plural in rayclusters raycronjobs rayjobs rayservices; do
      git -C "$KUBERAY_GIT_DIR" show v1.7.0:ray-operator/config/crd/bases/ray.io_$plural.yaml \\
        | python tests/k8s_testbed/crds/crd_fields.py --sha256 -
    done

where KUBERAY_GIT_DIR is a clone of https://github.com/ray-project/kuberay (a bare one will do). On a mismatch the
test writes the test bed's field list to a file, and when KUBERAY_GIT_DIR is set it rebuilds v1.7.0's list the same
way and prints the first differing lines.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import seeding
from k8s_testbed.crds import crd_fields

KUBERAY_TAG = "v1.7.0"
KUBERAY_COMMIT = "59d663aeec13760646da3db9c1cf8cfe883e30b7"
UPSTREAM_DIR = "ray-operator/config/crd/bases"
UPSTREAM_SHA256 = {
    "rayclusters": "85136bfe0b360a3a8750fa5d0b2826ee18c0db1f607e79516c930cc2bd3a460d",
    "raycronjobs": "3e47f0d2d21bfb5fbfa2b0305f8174cf455bbd9411061a3340741606a47d6657",
    "rayjobs": "c89695ac1666a47e351df39e601b071c2e7f403219ec6aebd621bbc25ee7dc0a",
    "rayservices": "54df55277b8efb3f990ab78e35ea708f5243aa35208c797c6a72f20dc01d4848",
}
SHOWN_DIFF_LINES = 40


def bundled_crd(plural: str) -> dict:
    return crd_fields.load_crd((seeding.CRD_DIR / f"ray.io_{plural}.yaml").read_text(encoding="utf-8"))


def upstream_lines(plural: str) -> list | None:
    """v1.7.0's canonical field list, rebuilt from a KubeRay git repository when KUBERAY_GIT_DIR names one."""
    git_dir = os.environ.get("KUBERAY_GIT_DIR")
    if not git_dir:
        return None
    spec = f"{KUBERAY_TAG}:{UPSTREAM_DIR}/ray.io_{plural}.yaml"
    shown = subprocess.run(["git", "-C", git_dir, "show", spec], capture_output=True, text=True, check=True)
    return crd_fields.crd_lines(crd_fields.load_crd(shown.stdout))


def mismatch_report(plural: str, text: str, folder: Path) -> str:
    path = folder / f"ray.io_{plural}.fields"
    path.write_text(text, encoding="utf-8")
    head = f"ray.io_{plural}.yaml differs from KubeRay {KUBERAY_TAG}'s; the test bed's field list is {path}."
    upstream = upstream_lines(plural)
    if upstream is None:
        command = (
            f'git -C "$KUBERAY_GIT_DIR" show {KUBERAY_TAG}:{UPSTREAM_DIR}/ray.io_{plural}.yaml '
            f"| python tests/k8s_testbed/crds/crd_fields.py - | diff - {path}"
        )
        return f"{head}\nSet KUBERAY_GIT_DIR to see the differing fields, or run: {command}"
    diff = difflib.unified_diff(upstream, text.splitlines(), f"kuberay {KUBERAY_TAG}", "test bed", lineterm="", n=0)
    lines = [line for line in diff if not line.startswith("@@")]
    return "\n".join([head, *lines[:SHOWN_DIFF_LINES]])


@pytest.mark.parametrize("plural", sorted(UPSTREAM_SHA256))
def test_crd_equals_kuberay_release(plural, tmp_path):
    text = crd_fields.canonical_text(bundled_crd(plural))
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != UPSTREAM_SHA256[plural]:
        pytest.fail(mismatch_report(plural, text, tmp_path), pytrace=False)


def test_the_seed_installs_every_kuberay_crd():
    """The chart's CRDs (helm-chart/kuberay-operator/crds at v1.7.0) are what a seed with KubeRay installs."""
    names = sorted(crd["metadata"]["name"] for crd in seeding.crds_for_group("ray.io"))
    assert names == [f"{plural}.ray.io" for plural in sorted(UPSTREAM_SHA256)]


def _mutations():
    """One change to each facet the field list must see (a description is the one it must not)."""

    def node(crd, *path):
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for step in path:
            schema = schema["items"] if step == "[]" else schema["properties"][step]
        return schema

    return {
        "default": lambda c: node(c, "spec", "workerGroupSpecs", "[]", "numOfHosts").pop("default"),
        "enum": lambda c: node(c, "spec", "upgradeStrategy", "type")["enum"].pop(),
        "required": lambda c: node(c, "spec", "workerGroupSpecs", "[]")["required"].remove("minReplicas"),
        "type": lambda c: node(c, "spec", "rayVersion").update(type="integer"),
        "format": lambda c: node(c, "status", "observedGeneration").update(format="int32"),
        "marker": lambda c: node(c, "status", "conditions").pop("x-kubernetes-list-type"),
        "cel": lambda c: node(c, "spec", "managedBy").pop("x-kubernetes-validations"),
        "field": lambda c: node(c, "spec", "headGroupSpec")["properties"].pop("enableIngress"),
        "served": lambda c: c["spec"]["versions"][1].update(served=False),
        "column": lambda c: c["spec"]["versions"][0]["additionalPrinterColumns"].pop(),
        "names": lambda c: c["spec"]["names"].update(shortNames=["rc"]),
    }


@pytest.mark.parametrize("facet", sorted(_mutations()))
def test_the_field_list_sees_each_facet(facet):
    crd = bundled_crd("rayclusters")
    changed = copy.deepcopy(crd)
    _mutations()[facet](changed)
    assert crd_fields.canonical_sha256(changed) != crd_fields.canonical_sha256(crd)


def test_the_field_list_leaves_descriptions_out():
    crd = bundled_crd("rayclusters")
    described = copy.deepcopy(crd)
    described["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"] = "x"
    assert crd_fields.canonical_sha256(described) == crd_fields.canonical_sha256(crd)
