# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The monitoring role (platform kubernetes) through ansible-playbook against the Kubernetes test bed.

One test bed for the module, its tests in order: the seed has no Prometheus Operator, so the preflight fails first;
then the test installs the operator's CRDs (the test bed's copies of prometheus-operator v0.93.0's) and a RayCluster
for KubeRay's emulation to make pods from, and the role applies, re-applies, dry-runs and tears down its
PodMonitors, ServiceMonitor and dashboard ConfigMap, then applies them again with other settings. The server
validates the monitors against the CRDs' schemas (unknown fields refused), so an accepted apply is a valid one.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from k8s_testbed import seeding
from k8s_testbed.harness import RunningTestBed
from playbook_runner import run_playbook
from seed_pods import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = "tests/integration/playbooks/monitoring_k8s.yml"
NS = "llm"
MON = "/apis/monitoring.coreos.com/v1/namespaces/llm"
OBJECTS = {
    "head": f"{MON}/podmonitors/llm-ray-head",
    "workers": f"{MON}/podmonitors/llm-ray-workers",
    "vllm": f"{MON}/servicemonitors/llm-vllm",
    "dashboard": "/api/v1/namespaces/llm/configmaps/llm-grafana-dashboard",
}
DASHBOARD = REPO / "roles" / "monitoring" / "files" / "ray-vllm-dashboard.json"
COMMON_LABELS = {
    "app.kubernetes.io/managed-by": "llmops.ray_vllm",
    "app.kubernetes.io/part-of": "ray-vllm",
    "app.kubernetes.io/instance": "llm",
    "app.kubernetes.io/name": "monitoring",
}


def play(bed, tmp_path, name, extra=None, check=False, tasks_from="main.yml"):
    """Run the role; returns (rc, output with whitespace folded, recap of localhost)."""
    variables = {
        "ray_vllm_kubeconfig": bed.kubeconfig,
        "ansible_python_interpreter": sys.executable,
        "monitoring_k8s_tasks_from": tasks_from,
    }
    variables.update(extra or {})
    args = ["-e", json.dumps(variables)] + (["--check", "--diff"] if check else [])
    env = dict(bed.env(), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    rc, output, recap = run_playbook(
        PLAYBOOK, inventory="localhost,", extra_args=args, env=env, timeout=300, log_path=tmp_path / f"{name}.log"
    )
    return rc, " ".join(output.split()), recap.get("localhost", {})


def get(bed, path):
    status, answer = bed.request("GET", path)
    return answer if status == 200 else None


def existing(bed):
    return {key for key, path in OBJECTS.items() if get(bed, path) is not None}


def versions(bed):
    return {key: get(bed, path)["metadata"]["resourceVersion"] for key, path in OBJECTS.items() if get(bed, path)}


def pods(bed, match_labels):
    selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
    return get(bed, f"/api/v1/namespaces/{NS}/pods?labelSelector={urllib.parse.quote(selector)}")["items"]


def port_names(pod):
    return {port.get("name") for container in pod["spec"]["containers"] for port in container.get("ports") or []}


def vllm_serve_vars():
    """vllm_serve's internals for its Service (labels, selector), with the release llm."""
    text = (REPO / "roles" / "vllm_serve" / "vars" / "main.yml").read_text().replace("{{ vllm_serve_release }}", "llm")
    return yaml.safe_load(text)


def raycluster():
    """A small RayCluster named as ray_cluster names it (<release>-raycluster), for KubeRay's emulation."""
    ray = {"name": "ray", "image": "rayproject/ray:2.60.0", "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}
    worker = {"groupName": "cpu", "replicas": 2, "minReplicas": 0, "maxReplicas": 2, "rayStartParams": {}}
    worker["template"] = {"spec": {"containers": [dict(ray)]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "llm-raycluster"},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [dict(ray)]}}},
            "workerGroupSpecs": [worker],
        },
    }


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """The default seed (KubeRay installed, no Prometheus Operator) with the namespace llm."""
    with RunningTestBed(tmp_path_factory.mktemp("monitoring-bed")) as running:
        status, answer = running.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert status == 201, answer
        yield running


@pytest.fixture(scope="module")
def operator_crds(bed):
    """The Prometheus Operator's CRDs installed as its chart would, and served; a RayCluster with its pods."""
    for crd in seeding.crds_for_group("monitoring.coreos.com"):
        status, answer = bed.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert status == 201, answer
    wait_until("the monitor kinds to be served", lambda: get(bed, f"{MON}/servicemonitors") is not None, 30, 0.2)
    status, answer = bed.request("POST", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters", raycluster())
    assert status == 201, answer
    cluster = {"ray.io/cluster": "llm-raycluster"}
    wait_until("KubeRay's head and two worker pods", lambda: len(pods(bed, cluster)) == 3, 30, 0.2)
    return bed


def test_preflight_without_the_crds_fails_naming_them_and_the_fix(bed, tmp_path):
    rc, output, recap = play(bed, tmp_path, "no-crds")
    assert rc != 0 and recap["failed"] == 1, output[-4000:]
    assert recap["changed"] == 0, recap
    assert (
        "seen: podmonitors.monitoring.coreos.com (Established: missing), "
        "servicemonitors.monitoring.coreos.com (Established: missing)" in output
    ), output[-4000:]
    assert "the Prometheus Operator is not installed" in output
    assert "Install it (the kube-prometheus-stack Helm chart" in output
    assert "set ray_vllm_monitoring: false" in output
    assert existing(bed) == set()

    # The teardown runs whether or not monitoring was on: with no monitor kinds served it deletes only the ConfigMap
    # (the API server would answer a delete of an unknown kind with an error).
    rc, output, recap = play(bed, tmp_path, "teardown-no-crds", tasks_from="teardown.yml")
    assert rc == 0 and recap["changed"] == 0, output[-4000:]


def test_check_mode_before_the_first_apply_creates_nothing(operator_crds, tmp_path):
    bed = operator_crds
    rc, output, recap = play(bed, tmp_path, "check-first", check=True)
    assert rc == 0, output[-4000:]
    # The server dry-ran the four objects (PodMonitors head and workers, ServiceMonitor, ConfigMap) in one task.
    assert recap["changed"] == 1, recap
    assert "Check mode: nothing was applied" in output
    assert existing(bed) == set()


def test_apply_creates_the_monitors_and_the_dashboard(operator_crds, tmp_path):
    bed = operator_crds
    rc, output, recap = play(bed, tmp_path, "apply")
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 1, output[-4000:]
    assert existing(bed) == set(OBJECTS)

    head, workers = get(bed, OBJECTS["head"]), get(bed, OBJECTS["workers"])
    for monitor, node_type, ports in (
        (head, "head", ["metrics", "as-metrics", "dash-metrics"]),
        (workers, "worker", ["metrics"]),
    ):
        assert monitor["metadata"]["labels"] == COMMON_LABELS
        spec = monitor["spec"]
        assert spec["selector"] == {"matchLabels": {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": node_type}}
        assert spec["namespaceSelector"] == {"matchNames": [NS]}
        assert spec["podTargetLabels"] == ["ray.io/cluster"]
        assert [(e["port"], e["path"], e["interval"]) for e in spec["podMetricsEndpoints"]] == [
            (port, "/metrics", "15s") for port in ports
        ]

    # The selectors find KubeRay's pods, and the metrics port each scrapes is one the pods declare.
    head_pods = pods(bed, head["spec"]["selector"]["matchLabels"])
    worker_pods = pods(bed, workers["spec"]["selector"]["matchLabels"])
    assert len(head_pods) == 1 and len(worker_pods) == 2
    assert all("metrics" in port_names(pod) for pod in head_pods + worker_pods)
    # The head of this RayCluster declares neither extra metrics port, and the report says so.
    assert not {"as-metrics", "dash-metrics"} & port_names(head_pods[0])
    assert "head container declares no port as-metrics or dash-metrics" in output

    monitor = get(bed, OBJECTS["vllm"])
    service = vllm_serve_vars()
    assert monitor["spec"]["selector"] == {"matchLabels": service["_vllm_serve_selector"]}
    # The selector matches the labels vllm_serve puts on its Service.
    assert service["_vllm_serve_selector"].items() <= service["_vllm_serve_labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "scheme": "http", "interval": "15s"}]

    configmap = get(bed, OBJECTS["dashboard"])
    assert configmap["metadata"]["labels"] == dict(COMMON_LABELS, grafana_dashboard="1")
    assert json.loads(configmap["data"]["ray-vllm-dashboard.json"]) == json.loads(DASHBOARD.read_text())

    assert "PodMonitor llm/llm-ray-head: pods ray.io/cluster=llm-raycluster, ray.io/node-type=head" in output
    assert "ServiceMonitor llm/llm-vllm: Services app.kubernetes.io/instance=llm, app.kubernetes.io/name=vllm" in output
    assert "Dashboard: ConfigMap llm/llm-grafana-dashboard (grafana_dashboard=1)" in output
    assert "monitoring_monitor_labels is empty" in output


def test_a_second_run_and_check_mode_change_nothing(operator_crds, tmp_path):
    bed = operator_crds
    before = versions(bed)
    assert set(before) == set(OBJECTS)
    rc, output, recap = play(bed, tmp_path, "again")
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 0, recap
    rc, output, recap = play(bed, tmp_path, "check-again", check=True)
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 0, recap
    assert versions(bed) == before


def test_teardown_removes_everything(operator_crds, tmp_path):
    bed = operator_crds
    assert existing(bed) == set(OBJECTS)
    rc, output, recap = play(bed, tmp_path, "teardown-check", check=True, tasks_from="teardown.yml")
    assert rc == 0 and recap["changed"] == 1, output[-4000:]
    assert existing(bed) == set(OBJECTS)

    rc, output, recap = play(bed, tmp_path, "teardown", tasks_from="teardown.yml")
    assert rc == 0 and recap["changed"] == 1, output[-4000:]
    assert existing(bed) == set()


def test_labels_tls_and_a_serve_llm_plan(operator_crds, tmp_path):
    bed = operator_crds
    # The head now declares the extra metrics ports (as KubeRay's sample does): the report has nothing to say of them.
    ports = [{"name": "as-metrics", "containerPort": 44217}, {"name": "dash-metrics", "containerPort": 44227}]
    patch = [{"op": "add", "path": "/spec/headGroupSpec/template/spec/containers/0/ports", "value": ports}]
    status, answer = bed.request(
        "PATCH", f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/llm-raycluster", patch, "application/json-patch+json"
    )
    assert status == 200, answer
    extra = {
        "monitoring_monitor_labels": {"release": "kps"},
        "monitoring_vllm_scheme": "https",
        "monitoring_vllm_tls_config": {"ca": {"secret": {"name": "llm-vllm-tls", "key": "ca.crt"}}},
        "monitoring_scrape_interval": 30,
    }
    rc, output, recap = play(bed, tmp_path, "tls", extra)
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 1, output[-4000:]
    for key in ("head", "workers", "vllm"):
        assert get(bed, OBJECTS[key])["metadata"]["labels"] == dict(COMMON_LABELS, release="kps")
    assert get(bed, OBJECTS["vllm"])["spec"]["endpoints"] == [
        {
            "port": "https",
            "path": "/metrics",
            "scheme": "https",
            "interval": "30s",
            "tlsConfig": {
                "serverName": "llm-vllm.llm.svc",
                "ca": {"secret": {"name": "llm-vllm-tls", "key": "ca.crt"}},
            },
        }
    ]
    assert "match their labels (release=kps)" in output
    assert "declares no port" not in output

    # The plan serves with Ray Serve LLM (its Service leads to Serve's proxy) and no dashboard is wanted: both go.
    extra.update(ray_vllm_plan={"serve": {"engine": "serve_llm"}}, monitoring_dashboard=False)
    rc, output, recap = play(bed, tmp_path, "serve-llm", extra)
    assert rc == 0, output[-4000:]
    assert recap["changed"] == 1, output[-4000:]
    assert existing(bed) == {"head", "workers"}
    assert "No ServiceMonitor: Ray Serve LLM serves the replicas" in output
    assert "No dashboard: monitoring_dashboard is false." in output
