# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus Operator's PodMonitor and ServiceMonitor CRDs in the test bed.

The files in crds/ are prometheus-operator v0.93.0's own (tag v0.93.0, commit PROMETHEUS_OPERATOR_COMMIT), under a
comment header. The expected hashes are those of the release's files, computed once with

    git -C "$PROMETHEUS_OPERATOR_GIT_DIR" show \\
        v0.93.0:example/prometheus-operator-crd-full/monitoring.coreos.com_<plural>.yaml | sha256sum

A seed with ``platform: {prometheus_operator: installed}`` installs them, and the API server validates monitors
against their schemas as it does every custom resource.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import seeding

PROMETHEUS_OPERATOR_TAG = "v0.93.0"
PROMETHEUS_OPERATOR_COMMIT = "f8fafd475f3d132e239432ae6172de60a6cb6516"
UPSTREAM_SHA256 = {
    "podmonitors": "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d",
    "servicemonitors": "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32",
}
NS = "llm"
MON = f"/apis/monitoring.coreos.com/v1/namespaces/{NS}"


def without_header(text: str) -> str:
    """The file below its leading comment lines: the release's text."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


@pytest.mark.parametrize("plural", sorted(UPSTREAM_SHA256))
def test_the_crds_are_the_release_files(plural):
    path = seeding.CRD_DIR / f"monitoring.coreos.com_{plural}.yaml"
    text = path.read_text(encoding="utf-8")
    assert (
        PROMETHEUS_OPERATOR_TAG in text.splitlines()[1]
        and seeding.PROMETHEUS_OPERATOR_VERSION == PROMETHEUS_OPERATOR_TAG
    )
    digest = hashlib.sha256(without_header(text).encode("utf-8")).hexdigest()
    assert digest == UPSTREAM_SHA256[plural], f"{path} differs from prometheus-operator {PROMETHEUS_OPERATOR_TAG}'s"


def test_the_seed_switch_installs_exactly_the_two_crds():
    seed = seeding.load_seed("gpu-nodes-2")
    crds = {o["metadata"]["name"] for o in seeding.seed_objects(seed) if o["kind"] == "CustomResourceDefinition"}
    assert not {name for name in crds if name.endswith(".monitoring.coreos.com")}
    seed["platform"]["prometheus_operator"] = "installed"
    crds_with = {o["metadata"]["name"] for o in seeding.seed_objects(seed) if o["kind"] == "CustomResourceDefinition"}
    assert crds_with - crds == {"podmonitors.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com"}


def pod_monitor(**endpoint):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "ray-head", "labels": {"release": "kps"}},
        "spec": {
            "selector": {"matchLabels": {"ray.io/node-type": "head"}},
            "podMetricsEndpoints": [{"port": "metrics", "interval": "15s", **endpoint}],
        },
    }


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    from k8s_testbed.harness import RunningTestBed

    folder = tmp_path_factory.mktemp("prometheus-operator")
    seed = seeding.load_seed("gpu-nodes-2")
    seed.update(name="prometheus-operator", namespaces=[NS])
    seed["platform"]["prometheus_operator"] = "installed"
    path = folder / "seed.yaml"
    path.write_text(yaml.safe_dump(seed))
    with RunningTestBed(folder / "bed", seed=str(path)) as running:
        yield running


def test_the_server_serves_the_monitor_kinds(bed):
    status, resources = bed.request("GET", "/apis/monitoring.coreos.com/v1")
    assert status == 200, resources
    kinds = {r["kind"]: r["namespaced"] for r in resources["resources"] if "/" not in r["name"]}
    assert kinds == {"PodMonitor": True, "ServiceMonitor": True}


def test_a_valid_pod_monitor_is_stored(bed):
    status, answer = bed.request("POST", f"{MON}/podmonitors", pod_monitor())
    assert status == 201, answer
    status, stored = bed.request("GET", f"{MON}/podmonitors/ray-head")
    assert status == 200 and stored["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "interval": "15s"}]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            {"scheme": "ftp"},
            'spec.podMetricsEndpoints[0].scheme: Unsupported value: "ftp": supported values: '
            '"http", "https", "HTTP", "HTTPS"',
        ),
        ({"interval": "15 seconds"}, "spec.podMetricsEndpoints[0].interval: Invalid value: "),
        ({"portNumber": 70000}, "spec.podMetricsEndpoints[0].portNumber: Invalid value: 70000: "),
        ({"targetPorts": "metrics"}, 'unknown field "spec.podMetricsEndpoints[0].targetPorts"'),
    ],
)
def test_a_bad_pod_monitor_is_refused_with_the_api_servers_message(bed, endpoint, message):
    body = pod_monitor(**endpoint)
    body["metadata"]["name"] = "bad"
    status, answer = bed.request("POST", f"{MON}/podmonitors", body)
    assert status == 422, answer
    assert answer["kind"] == "Status" and answer["reason"] == "Invalid", answer
    assert message in answer["message"], answer["message"]
    assert bed.request("GET", f"{MON}/podmonitors/bad")[0] == 404


def test_a_service_monitor_without_endpoints_is_refused(bed):
    body = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "vllm"},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}}},
    }
    status, answer = bed.request("POST", f"{MON}/servicemonitors", body)
    assert status == 422, answer
    assert 'ServiceMonitor.monitoring.coreos.com "vllm" is invalid: spec.endpoints: Required value' in answer["message"]
