"""A CPU plan on the seed's GPU nodes (ray_vllm_device: cpu), rendered into the manifests the roles apply.

The plan is made as playbooks/tasks/plan_kubernetes.yml makes it: the inventory variables through plan_request, the
head and driver pods through plan_cpu_pods, deployment_plan's options. The RayCluster and the vLLM driver Deployment
are then rendered with Ansible's own templating from the roles' defaults, vars, the expressions of their
tasks/settings.yml and their templates (their lookups and the collection's filters included), so what is checked is
what the roles would send to the API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_inputs import kubernetes_cpu_pods, plan_request

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "tests" / "fixtures" / "models"

# Runs in its own interpreter: Ansible's plugin loader takes over the ansible_collections imports of the process.
RENDER = textwrap.dedent(
    """
    import json, sys
    from ansible.plugins.loader import init_plugin_loader
    collections, repo, role_name, template, fact, given = sys.argv[1:7]
    init_plugin_loader([collections])
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    loader = DataLoader()
    role = repo + "/roles/" + role_name
    variables = {}
    for part in ("defaults", "vars"):
        variables.update(loader.load_from_file(role + "/" + part + "/main.yml", trusted_as_template=True) or {})
    # The settings task of the role: its vars and the fact it sets, as Ansible would template them.
    for task in loader.load_from_file(role + "/tasks/settings.yml", trusted_as_template=True):
        facts = task.get("ansible.builtin.set_fact") or {}
        if fact in facts:
            variables.update(task.get("vars") or {})
            variables[fact] = facts[fact]
    variables.update(json.loads(given), role_path=role, ansible_search_path=[role])
    with open(role + "/templates/" + template) as stream:
        text = stream.read()
    print(Templar(loader=loader, variables=variables).template(trust_as_template(text)))
    """
)


def collections_path():
    """A folder holding ansible_collections/llmops/ray_vllm: the one this checkout sits in, else .build/collections."""
    if REPO.parents[1].name == "ansible_collections":
        return REPO.parents[2]
    path = REPO / ".build" / "collections"
    link = path / "ansible_collections" / "llmops" / "ray_vllm"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return path


def render(role, template, fact, variables):
    """The manifest ``role``'s ``template`` renders with ``fact`` set as its tasks/settings.yml sets it."""
    # The child finds Ansible where this process does: ansible-test units puts it on sys.path, not in the venv.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    arguments = [str(collections_path()), str(REPO), role, template, fact, json.dumps(variables)]
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER, *arguments], capture_output=True, text=True, check=False, env=env
    )
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    return rendered.stdout


def seed_nodes():
    """The seed's GPU nodes as gpu_node_facts reports them (tests/k8s_testbed/seeds/gpu-nodes-2.yaml)."""
    node = {"gpus": 1, "gpu_memory_mib": 81920, "gpu_product": "NVIDIA-A100-SXM4-80GB", "cpus": 32.0}
    return [dict(node, name=f"gpu-worker-{index}", memory_mib=262044) for index in (1, 2)]


@pytest.fixture(scope="module")
def cpu_plan():
    """The plan plan_kubernetes.yml makes with ray_vllm_device: cpu and the demo model."""
    request = plan_request(
        {"ray_vllm_device": "cpu", "vllm_serve_max_model_len": 2048, "vllm_serve_cpu_kvcache_space_gib": 1}
    )
    cpu_pods = kubernetes_cpu_pods(
        {"cpus": "4", "memory": "16Gi", "node_selector": {}},
        {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}, "node_selector": {}},
    )
    with open(MODELS / "smollm2-135m-instruct" / "config.json", encoding="utf-8") as stream:
        config = json.load(stream)
    params = dict(
        request["options"],
        nodes=seed_nodes(),
        platform="kubernetes",
        model_config=config,
        model_params_b=0.135,
        cpu_pods=cpu_pods,
        option_names=request["option_names"],
    )
    plan = dp.plan_from_options(params)
    assert plan["device"] == "CPU"
    return plan


def test_the_raycluster_of_a_cpu_plan_asks_for_no_gpu(cpu_plan):
    manifest = render(
        "ray_cluster",
        "raycluster.yaml.j2",
        "_ray_cluster_k8s",
        {"ray_cluster_plan": cpu_plan, "ray_cluster_platform": "kubernetes", "ray_cluster_kuberay_layout": None},
    )
    assert "nvidia.com/gpu" not in manifest
    cluster = yaml.safe_load(manifest)
    head = cluster["spec"]["headGroupSpec"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert head["rayStartParams"]["num-gpus"] == "0" and group["rayStartParams"]["num-gpus"] == "0"
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 2, 2)
    for pod in (head["template"]["spec"], group["template"]["spec"]):
        assert "tolerations" not in pod and "nodeSelector" not in pod
        (container,) = pod["containers"]
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"memory"}
    # A worker pod requests 80 % (ray_cluster_worker_request_ratio) of its node: 25 of 32 CPUs.
    assert group["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "25"


def cpu_driver_manifest(cpu_plan):
    """The vLLM driver Deployment vllm_serve renders for the CPU plan (text)."""
    return render(
        "vllm_serve",
        "deployment.yaml.j2",
        "_vllm_serve_settings",
        {
            "vllm_serve_plan": cpu_plan,
            "vllm_serve_platform": "kubernetes",
            "vllm_serve_model_path": "/models/SmolLM2-135M-Instruct",
            "vllm_serve_served_model_name": "smollm2-135m-instruct",
            "vllm_serve_device": "cpu",
            "_vllm_serve_api_key": "not-a-real-key",
        },
    )


def test_the_vllm_driver_of_a_cpu_plan_runs_the_cpu_form_and_still_joins_ray(cpu_plan):
    manifest = cpu_driver_manifest(cpu_plan)
    (container,) = yaml.safe_load(manifest)["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in manifest and "not-a-real-key" not in manifest
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and "VLLM_USE_RAY_V2_EXECUTOR_BACKEND" not in env
    assert container["command"][:2] == ["bash", "-c"]
    script = container["command"][2]
    # The driver still joins the RayCluster as a node without GPUs before the server starts.
    assert "ray start --address=llm-raycluster-head-svc.llm.svc:6379 --num-gpus=0" in script
    server = script.rsplit("\nexec ", 1)[1].strip()
    assert server.startswith("python3 -m vllm.entrypoints.openai.api_server --model /models/SmolLM2-135M-Instruct ")
    for part in ("--distributed-executor-backend uni", "--enforce-eager", "--dtype float32", "--max-model-len 2048"):
        assert part in server, part
    assert "--gpu-memory-utilization" not in server
