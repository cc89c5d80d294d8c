# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`site.yml -i inventories/prod` on the seed cluster whose pods run as containers (seed_pods.py): what a bad image
does, for real.

The deployment that serves (converge, changed=0 on a re-run, the gates through the service proxy, `ray status` in
the head, the vLLM server killed and a worker pod deleted, teardown leaving no container) is molecule/kubernetes,
which runs the same SeedPods setup; this module proves, on one test bed in order:

- --check on the fresh cluster creates nothing;
- the image without Ray (images/ray-vllm/local-cpu.yaml's variant, vLLM alone as vLLM's own images are) is refused
  by the image gate, whose Job really runs the image's Python, before any Ray pod exists;
- with the gate turned off, KubeRay's pods really crash (bash: ray: command not found, exit 127) and the RayCluster
  gate reports the CrashLoopBackOff with the containers' last log lines;
- teardown leaves no container;
- two replicas (`ray_vllm_replicas: 2`) serve as a Ray Serve LLM application on KubeRay's pods, which run Ray's
  token authentication (a job without the token is refused): both replicas answer behind the head's Serve proxy, a
  request without the API key gets 401; the head's GCS killed (the kubelet restarts its container) is named by a
  --check run with the log of the container that died, and a re-run heals it with the same key and without fetching
  the model again; a file of the model removed and its folder made unreadable (the containers read without
  CAP_DAC_OVERRIDE) are named by a --check run from a pod that mounts the volume, and a re-run fetches the model
  again (the re-run's first look names the damage too); a re-run that finds the deployment standing ends after its
  one look with changed=0; teardown deletes the application and leaves no container.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import seed_pods
from chat_load import run_load
from dashboard_checks import jobs_api_refusals, requests_per_replica

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = pytest.mark.integration

NAMESPACE = seed_pods.NAMESPACE
OUTPUT = Path(__file__).resolve().parents[1] / "output" / "site_kubernetes_pods"


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    with seed_pods.SeedPods(tmp_path_factory.mktemp("seed-pods")) as running:
        yield running


def _items(bed, path):
    status, body = bed.request("GET", path)
    assert status in (200, 404), body
    return body.get("items", []) if status == 200 else []


def _flat(output):
    return " ".join(output.split())


def test_check_mode_creates_nothing(pods):
    rc, output, recap = pods.site("check", "--check", "--diff")
    assert rc == 0, output[-8000:]
    assert _items(pods.bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
    assert _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods") == []
    assert "TP" in output  # the plan table is shown before anything changes


def test_the_image_gate_refuses_the_image_without_ray(pods):
    image = ["-e", f"ray_cluster_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}"]
    image += ["-e", f"vllm_serve_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}"]
    rc, output, recap = pods.site("no-ray", *image)
    flat = _flat(output)
    assert rc != 0, output[-8000:]
    assert seed_pods.SERVING_IMAGE_WITHOUT_RAY in flat and "ray_cluster_image" in flat, output[-8000:]
    assert "Ray" in flat and "images/README.md" in flat, output[-8000:]
    assert _items(pods.bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
    # The model came through the download Job's container from the local hub before the gate ran.
    jobs = {j["metadata"]["name"]: j for j in _items(pods.bed, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")}
    assert jobs[f"{seed_pods.RELEASE}-model-download"]["status"].get("succeeded") == 1
    check = next(
        p for p in _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods") if "image-check" in p["metadata"]["name"]
    )
    assert check["status"]["containerStatuses"][0]["imageID"].startswith("localhost/llmops/ray-vllm@sha256:")


def test_without_the_gate_the_raycluster_gate_reports_the_crash_loop_and_its_logs(pods):
    extra = ["-e", f"ray_cluster_image={seed_pods.SERVING_IMAGE_WITHOUT_RAY}", "-e", "ray_cluster_image_check=false"]
    # The head exits at once (exit 127) and waits in CrashLoopBackOff from its first restart on.
    extra += ["-e", "ray_cluster_kuberay_timeout=45", "-e", "ray_cluster_kuberay_delay=5"]
    rc, output, recap = pods.site("crash-loop", *extra)
    flat = _flat(output)
    assert rc != 0, output[-8000:]
    assert "CrashLoopBackOff" in flat, output[-8000:]
    assert "last exit 127" in flat, output[-8000:]
    assert "ray: command not found" in flat, output[-8000:]
    assert "ray_cluster_image" in flat


def _teardown_leaves_no_container(pods, name):
    rc, output, recap = pods.site(name, playbook="playbooks/teardown.yml")
    assert rc == 0, output[-8000:]

    def serving_pods():
        """Pods that are not a finished Job's (teardown keeps the Jobs, whose containers have exited)."""
        listed = _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods")
        return [p["metadata"]["name"] for p in listed if "job-name" not in p["metadata"].get("labels", {})]

    seed_pods.wait_until("the Ray pods gone", lambda: not serving_pods(), timeout=120)
    assert seed_pods.runc_containers() == []
    return output


def test_teardown_leaves_no_container(pods):
    _teardown_leaves_no_container(pods, "teardown")


# --- two replicas as a Ray Serve LLM application on the pods (the pod bridge reaches the pods' own addresses)

DEPLOYMENT = f"LLMServer:{seed_pods.SERVED}"
REPLICAS = ("-e", "ray_vllm_replicas=2", "-e", "ray_vllm_target_concurrency=2")


def _ray_token(pods):
    """The Ray cluster's token, from the Secret ray_cluster keeps it in (the RayCluster's authOptions.secretName)."""
    status, secret = pods.bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{seed_pods.RELEASE}-ray-auth")
    assert status == 200, secret
    return base64.b64decode(secret["data"]["auth_token"]).decode()


def _get_json(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _head_ip(pods):
    listed = _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=ray.io/node-type%3Dhead")
    assert len(listed) == 1, [p["metadata"]["name"] for p in listed]
    return listed[0]["status"]["podIP"]


def _llm_deployment(dashboard, token):
    return _get_json(f"{dashboard}/api/serve/applications/", token)["applications"]["llm"]["deployments"][DEPLOYMENT]


@pytest.fixture(scope="module")
def two_replicas(pods):
    rc, output, recap = pods.site("replicas", *REPLICAS)
    assert rc == 0, output[-8000:]
    assert "Replicas: 2 behind Ray Serve" in output, output[-4000:]
    assert seed_pods.API_KEY not in output, "the API key leaked into the play output"
    assert _ray_token(pods) not in output, "the Ray token leaked into the play output"
    return _head_ip(pods)


def test_two_replicas_serve_from_the_pods_behind_the_head(pods, two_replicas):
    dashboard, endpoint = f"http://{two_replicas}:8265", f"http://{two_replicas}:8000"
    token = _ray_token(pods)
    replicas = _llm_deployment(dashboard, token)["replicas"]
    assert [r["state"] for r in replicas] == ["RUNNING", "RUNNING"], replicas
    config = json.dumps(_get_json(f"{dashboard}/api/serve/applications/", token)["applications"]["llm"])
    assert seed_pods.API_KEY not in config and token not in config, "a secret is in Serve's config"
    # Ray's token authentication is on in KubeRay's pods: a job without the token (or with a wrong one) is refused.
    assert jobs_api_refusals(dashboard) == (401, 403)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{endpoint}/v1/models", timeout=10)
    assert refused.value.code == 401
    report = run_load((endpoint, seed_pods.API_KEY, seed_pods.SERVED, 16), requests=24, concurrency=4, attempts=1)
    assert report.failed == 0, report.as_dict()
    seen = {}

    def both_served():
        summary = _get_json(f"{dashboard}/nodes?view=summary", token)["data"]["summary"]
        seen.update(requests_per_replica(summary, DEPLOYMENT))
        return len([count for count in seen.values() if count > 0]) >= 2

    seed_pods.wait_until("requests counted on both replicas (Serve's metrics)", both_served, timeout=60, interval=2)
    print(f"requests per replica: {seen}")


def test_a_rerun_looks_once_and_stands(pods, two_replicas):
    """Issue 18 on pods that run: the re-run's one look (cluster_stamp) finds the deployment as the last full run
    left it, the model's files read from a pod included, and ends the play: changed=0 and vLLM's answer."""
    rc, output, recap = pods.site("rerun-stands", *REPLICAS)
    flat = _flat(output)
    assert rc == 0 and recap["localhost"]["changed"] == 0, output[-8000:]
    assert "The deployment stands as the last full run left it" in flat and "A: " in flat, flat[-4000:]
    assert "Plan the RayCluster" not in output, "the roles ran although the deployment stood"
    print(f"the re-run that stands on the pods: {pods.runs['rerun-stands']:.1f} s")


def test_the_benchmark_runs_as_a_job_in_a_pod_against_the_service(pods, two_replicas, tmp_path):
    # playbooks/benchmark.yml on Kubernetes: vLLM's bench serve in a Job of the deployment's image, the key from the
    # Secret, the tokenizer from the model volume, the load through the vLLM Service inside the cluster.
    small = ["-e", "benchmark_num_prompts=8", "-e", "benchmark_max_concurrency=2", "-e", "benchmark_input_len=32"]
    small += ["-e", "benchmark_output_len=16", "-e", f"benchmark_result_dir={tmp_path}"]
    rc, output, _recap = pods.site("benchmark", *small, playbook="playbooks/benchmark.yml")
    assert rc == 0, output[-8000:]
    assert seed_pods.API_KEY not in output, "the API key leaked into the play output"
    results = list(tmp_path.glob("*.json"))
    assert len(results) == 1, output[-4000:]
    result = json.loads(results[0].read_text())
    assert (result["completed"], result["failed"]) == (8, 0), result
    assert result["output_throughput"] > 0
    assert "requests 8 completed, 0 failed in" in _flat(output), output[-4000:]
    assert (
        _items(pods.bed, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs?labelSelector=app.kubernetes.io/name%3Dbenchmark")
        == []
    )


def _container_status(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as stream:
        return dict(line.split(":\t", 1) for line in stream.read().splitlines() if ":\t" in line)


def test_the_pods_run_locked_down_behind_their_network_policy(pods, two_replicas):
    release = seed_pods.RELEASE
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
    status, policy = pods.bed.request("GET", f"{policies}/{release}-raycluster")
    assert status == 200, policy
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"ray.io/cluster": f"{release}-raycluster"}}
    assert spec["policyTypes"] == ["Ingress"]
    own = {"app.kubernetes.io/part-of": "ray-vllm", "app.kubernetes.io/instance": release}
    assert spec["ingress"][0] == {"from": [{"podSelector": {"matchLabels": own}}]}
    # The API server's service proxy (the gates) and the vLLM Service's clients: the dashboard and Serve's port.
    assert spec["ingress"][1] == {"ports": [{"port": 8265, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]}
    # Several replicas: no vLLM driver pod, so no policy for it.
    assert pods.bed.request("GET", f"{policies}/{release}-vllm")[0] == 404
    listed = _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods")
    assert any(p["metadata"].get("labels", {}).get("ray.io/node-type") == "worker" for p in listed)
    for pod in listed:
        name, labels = pod["metadata"]["name"], pod["metadata"].get("labels", {})
        for container in pod["spec"]["containers"]:
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, (name, context)
            assert context.get("capabilities") == {"drop": ["ALL"]}, (name, context)
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, (name, context)
        # Only a head with the autoscaler sidecar talks to the API server; these replicas are fixed.
        assert pod["spec"].get("automountServiceAccountToken") is False, (name, labels)
    # The running containers really hold no capability and cannot gain privileges.
    command = ["runc", "--root", str(Path(seed_pods.RUNTIME_ROOT) / "runc"), "list", "--format", "json"]
    running = [
        c
        for c in json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout or "[]")
        if c["status"] == "running"
    ]
    assert running
    for container in running:
        proc = _container_status(container["pid"])
        seen = {key: proc[key].strip() for key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}
        assert seen == {"CapEff": "0" * 16, "CapPrm": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}, seen


def _head_pod(pods):
    listed = _items(pods.bed, f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=ray.io/node-type%3Dhead")
    assert len(listed) == 1, [p["metadata"]["name"] for p in listed]
    return listed[0]


def _ray_container(pod):
    return next(c for c in pod["status"]["containerStatuses"] if c["name"] == "ray")


def _exec_in(container, *command):
    """Run ``command`` in a running container (a containerStatuses entry) as its own processes run: root without
    capabilities. Returns the exit code."""
    runc = ["runc", "--root", str(Path(seed_pods.RUNTIME_ROOT) / "runc"), "exec"]
    return subprocess.run([*runc, container["containerID"].split("://", 1)[-1], *command], check=False).returncode


def _jobs(pods):
    """The Jobs of the namespace by name and uid: the model's download Job must not run again."""
    listed = _items(pods.bed, f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
    return {j["metadata"]["name"]: j["metadata"]["uid"] for j in listed}


def test_the_head_killed_is_found_then_healed_by_a_rerun(pods, two_replicas):
    """Issue 14's Ray head fault on the pods: the head's GCS killed (SIGKILL). Ray's `ray start --block` exits with
    it, the kubelet restarts the head's container, and the cluster's state goes with the old GCS: the Serve
    application, and the workers, whose raylets stay attached to the dead GCS until they give up."""
    head = _head_pod(pods)
    name, before = head["metadata"]["name"], _ray_container(head)
    jobs = _jobs(pods)
    _exec_in(before, "pkill", "-KILL", "gcs_server")
    killed = time.monotonic()
    seed_pods.wait_until(
        "the head's container restarted",
        lambda: _ray_container(_head_pod(pods))["restartCount"] > before["restartCount"],
        timeout=120,
    )
    restarted = time.monotonic() - killed

    rc, output, recap = pods.site("head-fault-check", "--check", *REPLICAS)
    assert rc == 0, output[-8000:]
    flat = _flat(output)
    # The one look names the restarted head and the command that reads the log of the container that died.
    assert f"pod {name} (head) container ray restarted" in flat, flat[-6000:]
    assert f"its log: kubectl logs -n {NAMESPACE} {name} -c ray --previous" in flat, flat[-6000:]
    # (YAML output doubles the apostrophe of "cluster's".)
    assert "A head that restarted lost the cluster" in flat
    assert _head_pod(pods)["metadata"]["uid"] == head["metadata"]["uid"]

    rc, output, recap = pods.site("head-fault-heal", *REPLICAS)
    assert rc == 0, output[-8000:]
    assert "Replicas: 2 behind Ray Serve" in output, output[-4000:]
    assert _jobs(pods) == jobs, "the model's download ran again"
    # The same API key still gets answers from both replicas behind the new head.
    head_ip = _head_ip(pods)
    replicas = _llm_deployment(f"http://{head_ip}:8265", _ray_token(pods))["replicas"]
    assert [r["state"] for r in replicas] == ["RUNNING", "RUNNING"], replicas
    report = run_load((f"http://{head_ip}:8000", seed_pods.API_KEY, seed_pods.SERVED, 16), 4, 2, attempts=1)
    assert report.failed == 0, report.as_dict()
    times = {
        "container_restarted_s": round(restarted, 1),
        "check_s": round(pods.runs["head-fault-check"], 1),
        "heal_s": round(pods.runs["head-fault-heal"], 1),
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "head_fault.json").write_text(json.dumps(times, indent=2) + "\n")
    print(f"the head killed on the pods: {times}")


def test_a_damaged_model_on_the_volume_is_found_then_fetched_again(pods, two_replicas):
    """Issue 14's model faults on the pods, on the volume itself (the Ray pods mount it read-only): a file the
    completion marker lists removed, and the model's folder made unreadable (chmod 000), which locks out the serving
    containers: they read without CAP_DAC_OVERRIDE."""
    model_dir = seed_pods.deployment_vars()["model_storage_path"]
    claims = f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims"
    status, claim = pods.bed.request("GET", f"{claims}/{seed_pods.RELEASE}-models")
    assert status == 200, claim
    on_volume = pods.state_dir / "testbed" / "volumes" / claim["spec"]["volumeName"] / Path(model_dir).name
    (on_volume / "tokenizer.json").unlink()
    on_volume.chmod(0)
    head = _head_pod(pods)
    assert _exec_in(_ray_container(head), "test", "-r", f"{model_dir}/config.json") != 0
    jobs = _jobs(pods)

    rc, output, recap = pods.site("model-fault-check", "--check", *REPLICAS)
    assert rc == 0, output[-8000:]
    flat = _flat(output)
    # The re-run's first look reads the files from a pod as well, and names the damage before the full run.
    assert f"the model on {seed_pods.RELEASE}-models is damaged, as pod" in flat, flat[:6000]
    # The first running Ray pod by name that mounts the volume looks (a worker, here).
    assert re.search(
        f"was marked complete on {seed_pods.RELEASE}-models, but pod {seed_pods.RELEASE}-raycluster-[a-z0-9-]+ "
        f"finds it damaged: {model_dir}/.ray_vllm_complete.json cannot be read [(]Permission denied[)]. "
        "A run fetches it again",
        flat,
    ), flat[-6000:]
    assert _jobs(pods) == jobs

    rc, output, recap = pods.site("model-fault-heal", *REPLICAS)
    assert rc == 0, output[-8000:]
    assert "Fetching it again" in _flat(output)
    download = f"{seed_pods.RELEASE}-model-download"
    assert _jobs(pods)[download] != jobs[download], "the damaged model was not fetched again"
    # As the serving containers read it: the folder open again and the removed file back.
    assert _exec_in(_ray_container(_head_pod(pods)), "test", "-r", f"{model_dir}/tokenizer.json") == 0
    times = {"check_s": round(pods.runs["model-fault-check"], 1), "heal_s": round(pods.runs["model-fault-heal"], 1)}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "model_fault.json").write_text(json.dumps(times, indent=2) + "\n")
    print(f"the damaged model on the pods: {times}")


def test_teardown_deletes_the_serve_application_and_leaves_no_container(pods, two_replicas):
    output = _teardown_leaves_no_container(pods, "replicas-teardown")
    # The application went through Serve's API while the head still answered, before the RayCluster was deleted.
    task = output.split("Delete the Serve LLM application and its replicas on the RayCluster]", 1)[1]
    results = [line for line in task.split("TASK [", 1)[0].splitlines() if line.startswith(("changed:", "ok:"))]
    assert results and results[0].startswith("changed:"), output[-6000:]
