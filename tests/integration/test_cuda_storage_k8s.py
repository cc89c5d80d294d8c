# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""cuda_check and model_storage on platform kubernetes, run for real with ansible-playbook against the Kubernetes
test bed (tests/k8s_testbed: an emulated API server, not a cluster; its Jobs succeed, or fail with a given log)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from k8s_testbed.harness import RunningTestBed
from playbook_runner import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
SEEDS = REPO / "tests" / "k8s_testbed" / "seeds"
NAMESPACE, JOB, PVC = "llm", "llm-model-download", "llm-models"
MODEL = "AI-ModelScope/SmolLM2-135M-Instruct"


def run(bed, playbook, *extra, log_dir=None):
    env = dict(bed.env(), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))
    args = ["-e", f"@{extra[0]}"] if extra and isinstance(extra[0], Path) else []
    args += [arg for arg in extra if not isinstance(arg, Path)]
    log_path = None if log_dir is None else Path(log_dir) / (playbook + ".log")
    return run_playbook(str(PLAYBOOKS / f"{playbook}.yml"), "localhost,", args, env=env, log_path=log_path)


def seed_copy(tmp_path, name, change):
    seed = yaml.safe_load((SEEDS / "gpu-nodes-2.yaml").read_text())
    seed["name"] = name
    change(seed)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(seed))
    return str(path)


def cuda_check(tmp_path, seed):
    facts_out = tmp_path / "facts.json"
    with RunningTestBed(tmp_path / "bed", seed=seed) as bed:
        rc, output, recap = run(bed, "cuda_storage_cuda_check", "-e", f"facts_out={facts_out}")
    facts = json.loads(facts_out.read_text()) if facts_out.exists() else None
    return rc, output, recap, facts


# ---- cuda_check ------------------------------------------------------------------------------------------------


def test_cuda_check_seed_cluster(tmp_path):
    rc, output, recap, facts = cuda_check(tmp_path, "gpu-nodes-2")
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["failed"] == 0
    assert facts["platform"] == "kubernetes"
    assert facts["mode"] == "gpu"
    assert facts["gpu_count"] == 2
    assert facts["gpu_node_count"] == 2
    assert facts["gpu_product"] == "NVIDIA-A100-SXM4-80GB"
    assert facts["gpu_memory_mib"] == 81920
    assert facts["driver_version"] == "580.95.05"
    assert facts["cuda_version"] == "13.0"
    assert facts["nodes"] == [
        {
            "name": f"gpu-worker-{index}",
            "gpus": 1,
            "gpu_product": "NVIDIA-A100-SXM4-80GB",
            "gpu_memory_mib": 81920,
            "cpus": 32.0,
            "memory_mib": 262044,
        }
        for index in (1, 2)
    ]
    assert {node["mig_strategy"] for node in facts["node_details"]} == {"single"}
    assert facts["problems"] == []
    # deployment_plan took cuda_check_facts.nodes as they are.
    assert facts["plan_world_size"] >= 1


def test_cuda_check_three_gpu_nodes(tmp_path):
    rc, output, recap, facts = cuda_check(tmp_path, "gpu-nodes-3")
    assert rc == 0, output[-4000:]
    assert facts["gpu_count"] == 3
    assert [node["name"] for node in facts["nodes"]] == ["gpu-worker-1", "gpu-worker-2", "gpu-worker-3"]
    assert {node["gpu_product"] for node in facts["nodes"]} == {"NVIDIA-A100-SXM4-80GB"}


def test_cuda_check_gpus_not_advertised_stops_before_anything_changes(tmp_path):
    seed = seed_copy(tmp_path, "no-gpu-operator", lambda s: s["platform"].update(gpu_operator="absent"))
    rc, output, recap, facts = cuda_check(tmp_path, seed)
    assert rc != 0
    assert facts is None
    assert recap["localhost"]["failed"] == 1
    assert recap["localhost"]["changed"] == 0
    # cuda_check only reads; site.yml runs it before anything changes when the GPU operator is only verified.
    assert "Check the GPU nodes against what vLLM needs" in output
    assert "No GPU node" in output
    assert "nvidia.com/gpu.present=true" in output
    assert "GPU operator" in output


def test_cuda_check_driver_too_old(tmp_path):
    def old_driver(seed):
        seed["node_groups"][1]["gpu"]["driver_version"] = "535.104.05"

    rc, output, recap, facts = cuda_check(tmp_path, seed_copy(tmp_path, "old-driver", old_driver))
    assert rc != 0
    assert facts is None
    assert recap["localhost"]["changed"] == 0
    assert "NVIDIA driver too old on gpu-worker-1: seen 535.104.05" in output
    assert "NVIDIA driver too old on gpu-worker-2: seen 535.104.05" in output
    assert "needed 580.65.06 or newer" in output


# ---- model_storage ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with RunningTestBed(tmp_path_factory.mktemp("storage-bed")) as running:
        yield running


def read(bed, kind, name, namespace=NAMESPACE):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = bed.api_client()
    readers = {
        "Namespace": lambda: client.CoreV1Api(api).read_namespace(name),
        "PersistentVolumeClaim": lambda: client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace),
        "ConfigMap": lambda: client.CoreV1Api(api).read_namespaced_config_map(name, namespace),
        "Job": lambda: client.BatchV1Api(api).read_namespaced_job(name, namespace),
    }
    try:
        return readers[kind]()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_model_storage_on_kubernetes(bed, tmp_path):
    facts_out = tmp_path / "model.json"

    # --check: nothing is created and the run passes.
    rc, output, recap = run(bed, "cuda_storage_model_storage", "--check", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    for kind, name in (("Namespace", NAMESPACE), ("PersistentVolumeClaim", PVC), ("Job", JOB)):
        assert read(bed, kind, name) is None, f"--check created {kind} {name}"

    # First run: claim, script ConfigMap and Job; waits for the Job, then marks the claim complete.
    rc, output, recap = run(bed, "cuda_storage_model_storage", "-e", f"facts_out={facts_out}", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    claim = read(bed, "PersistentVolumeClaim", PVC)
    assert claim.spec.access_modes == ["ReadWriteMany"]
    assert claim.spec.storage_class_name == "object-storage"
    assert claim.spec.resources.requests["storage"] == "1Gi"
    assert claim.metadata.labels["app.kubernetes.io/name"] == "models"
    assert claim.metadata.labels["app.kubernetes.io/instance"] == "llm"
    assert claim.metadata.annotations["llmops.ray-vllm/model"] == f"{MODEL}@master"
    assert claim.metadata.annotations["llmops.ray-vllm/complete"] == "true"
    script = read(bed, "ConfigMap", JOB)
    # The SDK call is the collection's one, shipped beside the script (the hosts platform downloads with it too).
    assert "download_with_sdk(" in script.data["download_model.py"]
    assert "snapshot_download(model_id, revision=revision, local_dir=target)" in script.data["_model_dir.py"]
    assert ".ray_vllm_complete.json" in script.data["download_model.py"]
    job = read(bed, "Job", JOB)
    assert job.status.succeeded == 1
    assert job.spec.backoff_limit == 1
    assert job.spec.active_deadline_seconds == 120
    container = job.spec.template.spec.containers[0]
    assert container.image == "python:3.11-slim"
    env = {item.name: item.value for item in container.env}
    assert env["MODEL_ID"] == MODEL
    assert env["MODEL_REVISION"] == "master"
    assert env["MODEL_DIR"] == "/models/SmolLM2-135M-Instruct"
    assert env["MODELSCOPE_VERSION"] == "1.40.2"
    assert {(m.name, m.mount_path) for m in container.volume_mounts} >= {("models", "/models")}
    assert job.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == PVC
    assert "Wait for the download Job" in output
    facts = json.loads(facts_out.read_text())
    assert facts["pvc"] == PVC
    assert facts["mount_path"] == "/models"
    assert facts["complete"] is True
    first_uid = job.metadata.uid

    # Second run: the claim says the model is complete; nothing changes and no Job is made.
    rc, output, recap = run(bed, "cuda_storage_model_storage", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    assert recap["localhost"]["changed"] == 0, output[-4000:]
    assert read(bed, "Job", JOB).metadata.uid == first_uid
    assert "is complete on llm-models" in output

    # --check with another revision: dry runs only, the Job and the claim stay as they are.
    rc, output, recap = run(bed, "cuda_storage_model_storage", "--check", "-e", "model_storage_revision=v2")
    assert rc == 0, output[-4000:]
    assert read(bed, "Job", JOB).metadata.uid == first_uid
    claim = read(bed, "PersistentVolumeClaim", PVC)
    assert claim.metadata.annotations["llmops.ray-vllm/model"] == f"{MODEL}@master"

    # Another revision: the finished Job makes way for a new one, and the claim is marked with the new revision.
    rc, output, recap = run(bed, "cuda_storage_model_storage", "-e", "model_storage_revision=v2", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    job = read(bed, "Job", JOB)
    assert job.metadata.uid != first_uid
    assert job.metadata.annotations["llmops.ray-vllm/model"] == f"{MODEL}@v2"
    assert read(bed, "PersistentVolumeClaim", PVC).metadata.annotations["llmops.ray-vllm/model"] == f"{MODEL}@v2"

    # A failing download: the failure carries the pod's log and the fix.
    line = f"modelscope.hub.errors.NotExistError: The model {MODEL} revision v3 does not exist"
    bed.admin(
        "POST",
        "outcomes",
        {"kind": "Job", "namespace": NAMESPACE, "name": JOB, "outcome": "Failed", "log": f"downloading\n{line}"},
    )
    rc, output, recap = run(bed, "cuda_storage_model_storage", "-e", "model_storage_revision=v3", log_dir=tmp_path)
    assert rc != 0
    assert line in output
    assert "BackoffLimitExceeded" in output
    assert "Fix: check that model_storage_model_id and model_storage_revision exist" in output
    claim = read(bed, "PersistentVolumeClaim", PVC)
    assert claim.metadata.annotations["llmops.ray-vllm/model"] == f"{MODEL}@v2"
    bed.admin("POST", "outcomes", {"kind": "Job", "namespace": NAMESPACE, "name": JOB, "outcome": "Succeeded"})


def test_model_storage_missing_storage_class_fails_in_the_preflight(bed, tmp_path):
    rc, output, recap = run(
        bed,
        "cuda_storage_model_storage",
        "-e",
        "model_storage_storage_class=fast-nfs",
        "-e",
        "ray_vllm_namespace=other",
        log_dir=tmp_path,
    )
    assert rc != 0
    assert recap["localhost"]["changed"] == 0
    assert "model_storage_storage_class 'fast-nfs' names no StorageClass" in output
    assert "object-storage, standard" in output
    assert read(bed, "Namespace", "other") is None


def test_model_storage_invalid_namespace_fails_in_the_preflight(bed, tmp_path):
    rc, output, recap = run(bed, "cuda_storage_model_storage", "-e", "ray_vllm_namespace=LLM_prod", log_dir=tmp_path)
    assert rc != 0
    assert recap["localhost"]["changed"] == 0
    assert "'LLM_prod' (ray_vllm_namespace" in output


def test_model_storage_teardown(bed, tmp_path):
    rc, output, recap = run(bed, "cuda_storage_model_storage", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    rc, output, recap = run(bed, "cuda_storage_teardown", log_dir=tmp_path)
    assert rc == 0, output[-4000:]
    for kind, name in (("PersistentVolumeClaim", PVC), ("Job", JOB), ("ConfigMap", JOB)):
        assert read(bed, kind, name) is None, f"teardown left {kind} {name}"
