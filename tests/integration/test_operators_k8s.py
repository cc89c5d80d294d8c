# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The gpu_operator and kuberay_operator roles through ansible-playbook against the Kubernetes test bed.

Verify mode on the seed cluster (operators seeded as installed), install mode with the recording stand-in for helm
(tests/k8s_testbed/bin/helm: it installs nothing, so the gate still sees the seeded operators), check mode, and the
gate's failures: operators absent, a GPU node that advertises no GPU, a KubeRay operator without a ready replica.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from k8s_testbed.harness import RunningTestBed, TestBeds
from playbook_runner import run_playbook

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
PLAYBOOK = "tests/integration/playbooks/operators_k8s.yml"
FAKE_HELM = TESTS / "k8s_testbed" / "bin" / "helm"
SEED = TESTS / "k8s_testbed" / "seeds" / "gpu-nodes-2.yaml"

GPU_VALUES = {
    "driver": {"enabled": False},
    "toolkit": {"enabled": True},
    "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": False}},
    "mig": {"strategy": "single"},
}
KUBERAY_VALUES = {"image": {"repository": "quay.io/kuberay/operator", "tag": "v1.7.0"}}


def play(bed, tmp_path, extra_vars=None, check=False, record=None, name="run"):
    """Run the operators playbook against `bed`; returns (rc, output, recap of localhost)."""
    variables = {"ray_vllm_kubeconfig": bed.kubeconfig, "ansible_python_interpreter": sys.executable}
    variables.update(extra_vars or {})
    vars_file = tmp_path / f"{name}-vars.json"
    vars_file.write_text(json.dumps(variables))
    env = bed.env()
    env.update(ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    if record is not None:
        env["HELM_RECORD_FILE"] = str(record)
    args = ["-c", "local", "-e", f"@{vars_file}"] + (["--check"] if check else [])
    rc, output, recap = run_playbook(
        PLAYBOOK, inventory="localhost,", extra_args=args, env=env, timeout=600, log_path=tmp_path / f"{name}.log"
    )
    # The YAML callback wraps long messages: compare with the whitespace folded.
    return rc, " ".join(output.split()), recap.get("localhost", {})


def records(path):
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def deploys(path):
    return [r for r in records(path) if r["command"] in ("upgrade", "install")]


def fast(**extra):
    """Short gate waits for the runs that are meant to fail."""
    base = {
        "gpu_operator_wait_retries": 2,
        "gpu_operator_wait_delay": 1,
        "kuberay_operator_wait_retries": 2,
        "kuberay_operator_wait_delay": 1,
    }
    base.update(extra)
    return base


def install_vars(**extra):
    base = {
        "gpu_operator_mode": "install",
        "kuberay_operator_mode": "install",
        "gpu_operator_helm_binary": str(FAKE_HELM),
        "kuberay_operator_helm_binary": str(FAKE_HELM),
    }
    base.update(extra)
    return base


def seed_file(tmp_path, **platform):
    seed = yaml.safe_load(SEED.read_text())
    seed["name"] = "operators-test"
    seed["platform"].update(platform)
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed))
    return str(path)


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def diagnose(output, bed):
    return output[-8000:] + "\n--- server log ---\n" + bed.server_log()[-2000:]


@pytest.fixture(scope="module")
def seeded_bed(tmp_path_factory):
    """The default seed: GPU operator and KubeRay operator installed, 2 GPU nodes."""
    with RunningTestBed(tmp_path_factory.mktemp("operators-bed")) as bed:
        yield bed


@pytest.fixture
def own_bed(tmp_path):
    beds = TestBeds(tmp_path)
    yield beds.start
    beds.stop_all()


def test_verify_passes_on_the_seed_cluster_and_changes_nothing(seeded_bed, tmp_path):
    record = tmp_path / "helm.jsonl"
    rc, output, recap = play(seeded_bed, tmp_path, record=record, name="first")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["failed"] == 0 and recap["changed"] == 0, recap
    assert "ClusterPolicy ready, 2 validator pod(s) ready, GPUs advertised: gpu-worker-1 1, gpu-worker-2 1." in output
    assert "Deployment kuberay-system/kuberay-operator has 1 available replica(s)" in output

    rc, output, recap = play(seeded_bed, tmp_path, record=record, name="second")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 0, recap

    rc, output, recap = play(seeded_bed, tmp_path, check=True, record=record, name="check")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 0, recap
    # Verify mode never runs helm.
    assert records(record) == []


def test_install_runs_the_pinned_charts_with_the_values_and_is_idempotent(seeded_bed, tmp_path):
    record = tmp_path / "helm.jsonl"

    # Check mode before anything is installed: Helm says it would install, and nothing is run.
    rc, output, recap = play(seeded_bed, tmp_path, install_vars(), check=True, record=record, name="check-new")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 2, recap
    assert deploys(record) == []

    rc, output, recap = play(seeded_bed, tmp_path, install_vars(), record=record, name="install")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 2, recap
    gpu, kuberay = deploys(record)

    assert gpu["command"] == "upgrade" and "-i" in gpu["argv"]
    assert "--version=v25.10.1" in gpu["argv"]
    assert "--repo=https://helm.ngc.nvidia.com/nvidia" in gpu["argv"]
    assert gpu["argv"][-2:] == ["gpu-operator", "gpu-operator"]  # release, chart
    assert {"--create-namespace", "--wait", "--reset-values"} <= set(gpu["argv"])
    assert gpu["argv"][gpu["argv"].index("--timeout") + 1] == "10m"
    assert gpu["namespace"] == "gpu-operator"
    assert gpu["kubeconfig_current_context"] == "testbed"
    assert gpu["values"] == GPU_VALUES

    assert kuberay["command"] == "upgrade" and "-i" in kuberay["argv"]
    assert "--version=1.7.0" in kuberay["argv"]
    assert "--repo=https://ray-project.github.io/kuberay-helm/" in kuberay["argv"]
    assert kuberay["argv"][-2:] == ["kuberay-operator", "kuberay-operator"]
    assert {"--create-namespace", "--wait"} <= set(kuberay["argv"])
    assert kuberay["namespace"] == "kuberay-system"
    assert kuberay["kubeconfig_current_context"] == "testbed"
    assert kuberay["values"] == KUBERAY_VALUES

    # Second run: the releases are there with the same chart and values.
    rc, output, recap = play(seeded_bed, tmp_path, install_vars(), record=record, name="again")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 0, recap
    assert len(deploys(record)) == 2

    # Check mode with a changed value: reported as a change, no upgrade run.
    changed = install_vars(gpu_operator_mig_strategy="mixed", kuberay_operator_watch_namespaces=["llm", "team-a"])
    rc, output, recap = play(seeded_bed, tmp_path, changed, check=True, record=record, name="check-change")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 2, recap
    assert len(deploys(record)) == 2

    # The change for real: the new values are what helm gets.
    extra = {"nfd": {"enabled": False}, "mig": {"strategy": "mixed"}}
    changed.update(gpu_operator_extra_values=extra, gpu_operator_dcgm_exporter_service_monitor_enabled=True)
    rc, output, recap = play(seeded_bed, tmp_path, changed, record=record, name="change")
    assert rc == 0, diagnose(output, seeded_bed)
    assert recap["changed"] == 2, recap
    gpu, kuberay = deploys(record)[2:]
    assert gpu["values"] == {
        "driver": {"enabled": False},
        "toolkit": {"enabled": True},
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": True}},
        "mig": {"strategy": "mixed"},
        "nfd": {"enabled": False},
    }
    assert kuberay["values"] == dict(KUBERAY_VALUES, watchNamespace=["llm", "team-a"])


def test_watch_namespaces_must_include_the_ray_namespace(seeded_bed, tmp_path):
    variables = {"operators_roles": ["kuberay_operator"], "kuberay_operator_watch_namespaces": ["team-a"]}
    rc, output, recap = play(seeded_bed, tmp_path, variables, name="watch")
    assert rc != 0
    assert "leaves out llm (kuberay_operator_ray_namespace, from ray_vllm_namespace)" in output, output[-4000:]


def test_verify_fails_naming_install_mode_when_the_operators_are_absent(own_bed, tmp_path):
    bed = own_bed(seed_file(tmp_path, gpu_operator="absent", kuberay_operator="absent"))
    record = tmp_path / "helm.jsonl"

    rc, output, recap = play(bed, tmp_path, fast(operators_roles=["gpu_operator"]), record=record, name="gpu")
    assert rc != 0 and recap["failed"] == 1, output[-4000:]
    assert "the ClusterPolicy CRD (clusterpolicies.nvidia.com) is missing" in output
    assert "Set gpu_operator_mode: install" in output
    assert "Nothing was changed" in output  # the preflight's message: it stops before any change

    rc, output, recap = play(bed, tmp_path, fast(operators_roles=["kuberay_operator"]), record=record, name="ray")
    assert rc != 0 and recap["failed"] == 1, output[-4000:]
    assert "rayclusters.ray.io, rayjobs.ray.io, rayservices.ray.io, raycronjobs.ray.io are missing" in output
    assert "Set kuberay_operator_mode: install" in output
    assert "Nothing was changed" in output

    # With the preflight already done (site.yml runs them all first), the gate says the same.
    variables = fast(ray_vllm_preflight_done=True)
    rc, output, recap = play(bed, tmp_path, variables, record=record, name="gate-only")
    assert rc != 0, output[-4000:]
    assert "Set gpu_operator_mode: install" in output

    variables = fast(ray_vllm_preflight_done=True, operators_roles=["kuberay_operator"])
    rc, output, recap = play(bed, tmp_path, variables, record=record, name="gate-only-ray")
    assert rc != 0, output[-4000:]
    assert "Set kuberay_operator_mode: install" in output
    assert records(record) == []

    # Install mode in check mode on the bare cluster: Helm would install; the gate has nothing to check yet.
    rc, output, recap = play(bed, tmp_path, install_vars(), check=True, record=record, name="check-install")
    assert rc == 0, diagnose(output, bed)
    assert recap["changed"] == 2, recap
    assert "the GPU operator is not installed yet" in output
    assert "the KubeRay CRDs are not installed yet" in output
    assert deploys(record) == []


def test_gate_names_the_gpu_node_that_advertises_no_gpu(own_bed, tmp_path):
    bed = own_bed()

    def advertised():
        status, nodes = bed.request("GET", "/api/v1/nodes?labelSelector=nvidia.com%2Fgpu.present%3Dtrue")
        return status == 200 and sorted(
            n["metadata"]["name"] for n in nodes["items"] if n["status"].get("allocatable", {}).get("nvidia.com/gpu")
        ) == ["gpu-worker-1", "gpu-worker-2"]

    wait_for(advertised, "the GPU operator to advertise the seed's GPUs")
    # The device plugin stops advertising on gpu-worker-2 (as when its driver is gone): the operator's
    # controller is switched off so it does not put the resource back.
    bed.admin("PUT", "controllers/gpu_operator", {"enabled": False})
    patch = {"status": {"allocatable": {"nvidia.com/gpu": None}, "capacity": {"nvidia.com/gpu": None}}}
    status, answer = bed.request(
        "PATCH", "/api/v1/nodes/gpu-worker-2/status", patch, content_type="application/merge-patch+json"
    )
    assert status == 200, answer

    rc, output, recap = play(bed, tmp_path, fast(operators_roles=["gpu_operator"]), name="silent")
    assert rc != 0 and recap["rescued"] == 1, output[-4000:]
    message = output[output.index("these GPU nodes") :]
    assert "gpu-worker-2 (device plugin pod running)" in message
    assert "gpu-worker-1" not in message.split("Likely cause", maxsplit=1)[0]
    assert "the NVIDIA driver is missing or not loaded" in message
    assert "gpu_operator_driver_enabled is false" in message

    # More GPU nodes wanted than are labelled.
    variables = fast(operators_roles=["gpu_operator"], gpu_operator_min_gpu_nodes=3)
    bed.request(
        "PATCH",
        "/api/v1/nodes/gpu-worker-2/status",
        {"status": {"allocatable": {"nvidia.com/gpu": "1"}}},
        content_type="application/merge-patch+json",
    )
    rc, output, recap = play(bed, tmp_path, variables, name="too-few")
    assert rc != 0, output[-4000:]
    assert (
        "only 2 node(s) carry the label nvidia.com/gpu.present=true, fewer than gpu_operator_min_gpu_nodes (3)"
        in output
    )


def test_gate_waits_for_the_kuberay_operator_and_finds_it_in_another_namespace(own_bed, tmp_path):
    bed = own_bed(seed_file(tmp_path, kuberay_operator_namespace="ray-system"))

    # The operator runs in ray-system, not in kuberay_operator_namespace: the gate finds it there.
    rc, output, recap = play(bed, tmp_path, fast(operators_roles=["kuberay_operator"]), name="elsewhere")
    assert rc == 0, diagnose(output, bed)
    assert "runs in namespace ray-system, not in kuberay_operator_namespace (kuberay-system)" in output
    assert "Deployment ray-system/kuberay-operator has 1 available replica(s)" in output

    # Scaled to zero: no available replica, and the gate says so.
    status, answer = bed.request(
        "PATCH",
        "/apis/apps/v1/namespaces/ray-system/deployments/kuberay-operator",
        {"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, answer

    def scaled_down():
        dummy, deployment = bed.request("GET", "/apis/apps/v1/namespaces/ray-system/deployments/kuberay-operator")
        return not deployment.get("status", {}).get("availableReplicas")

    wait_for(scaled_down, "the operator Deployment to scale down")
    rc, output, recap = play(bed, tmp_path, fast(operators_roles=["kuberay_operator"]), name="unavailable")
    assert rc != 0 and recap["rescued"] == 1, output[-4000:]
    assert "Deployment ray-system/kuberay-operator has 0 available replica(s) (spec.replicas 0)" in output
    assert "It is scaled to zero" in output
