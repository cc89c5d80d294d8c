# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""vllm_serve (platform kubernetes) and chat_ui against the Kubernetes test bed, gated by a real vLLM CPU server.

One real vLLM server (started once for the module, with the collection's X-API-Key middleware loaded through
``--middleware``) stands behind the Service ``llm/llm-vllm:8000`` of the test bed, so the role's gate goes through
the API server's service proxy, which removes ``Authorization`` as a real one does, and needs a real completion.
The tests run in order: each builds on what the one before left in the test bed.

Why a mapping and not the pods that run: these tests cover the role's GPU plans, Secrets, Ingress and chat UIs,
whose vLLM pod runs vLLM's GPU command line, which the CPU image cannot serve, and whose chat UI images cannot be
built here; the vLLM driver serving from its container is molecule/kubernetes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS_DIR))
sys.path.insert(0, str(TESTS_DIR / "integration"))

import vllm_local  # noqa: E402
from conftest import SHARED_VLLM_KEY  # noqa: E402
from k8s_testbed.harness import RunningTestBed  # noqa: E402
from playbook_runner import REPO, collections_path, run_playbook  # noqa: E402

pytestmark = pytest.mark.integration

KEY = SHARED_VLLM_KEY
SERVED = vllm_local.DEMO_SERVED_NAME
MIDDLEWARE = "llmops_api_key_header.ApiKeyHeaderMiddleware"
PLAYBOOK = "tests/integration/playbooks/vllm_serve_k8s.yml"
TEARDOWN = "tests/integration/playbooks/vllm_serve_k8s_teardown.yml"
MODEL_PATH = "/models/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def vllm_server(keyed_vllm):
    """The shared real vLLM CPU server with the key and the middleware, as the Deployment runs it (conftest.py)."""
    return keyed_vllm


@pytest.fixture(scope="module")
def bed(tmp_path_factory, vllm_server):
    with RunningTestBed(tmp_path_factory.mktemp("testbed")) as running:
        for namespace in ("llm", "np"):
            running.admin("PUT", "service-backends", {f"{namespace}/llm-vllm:8000": vllm_server.base_url})
        yield running


def request(url, headers=None, body=None):
    """(status, text) of a request straight to the vLLM server."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def prepare_namespace(bed, namespace):
    """What model_storage would have made: the namespace and the model claim."""
    status, answer = bed.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    assert status in (201, 409), answer
    claim = {
        "metadata": {"name": "llm-models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    status, answer = bed.request("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", claim)
    assert status in (201, 409), answer


def get(bed, path):
    status, answer = bed.request("GET", path)
    return answer if status == 200 else None


def objects(bed, namespace):
    """Which of the role's objects exist in the namespace."""
    paths = {
        "Secret": f"/api/v1/namespaces/{namespace}/secrets/llm-vllm-api-key",
        "ConfigMap": f"/api/v1/namespaces/{namespace}/configmaps/llm-vllm-middleware",
        "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments/llm-vllm",
        "Service": f"/api/v1/namespaces/{namespace}/services/llm-vllm",
        "ChatDeployment": f"/apis/apps/v1/namespaces/{namespace}/deployments/llm-chat",
        "ChatService": f"/api/v1/namespaces/{namespace}/services/llm-chat",
    }
    return {kind for kind, path in paths.items() if get(bed, path) is not None}


def play(bed, tmp_path, name, extra=None, check=False, playbook=PLAYBOOK, verbose=False, home=None):
    variables = {
        "ray_vllm_kubeconfig": bed.kubeconfig,
        "ansible_python_interpreter": sys.executable,
        "vllm_serve_platform": "kubernetes",
        "vllm_serve_api_key": KEY,
        "vllm_serve_served_model_name": SERVED,
        "vllm_serve_model_path": MODEL_PATH,
        "vllm_serve_startup_timeout": 120,
        "vllm_serve_health_interval": 2,
        "chat_ui_startup_timeout": 60,
        "chat_ui_health_interval": 2,
    }
    variables.update(extra or {})
    args = ["-e", json.dumps(variables)]
    if check:
        args.append("--check")
    if verbose:
        args += ["--diff", "-v"]
    env = dict(bed.env(), ANSIBLE_COLLECTIONS_PATH=str(collections_path()))
    if home:
        env["HOME"] = str(home)
    rc, output, recap = run_playbook(
        playbook, inventory="localhost,", extra_args=args, env=env, timeout=900, log_path=tmp_path / f"{name}.log"
    )
    return rc, output, recap.get("localhost", {})


def test_middleware_with_a_real_vllm(vllm_server):
    url = vllm_server.base_url + "/v1/models"
    assert request(url)[0] == 401
    for headers in ({"X-API-Key": KEY}, {"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        status, text = request(url, headers)
        assert status == 200 and SERVED in text, (headers, status, text)
    assert request(url, {"X-API-Key": "wrong"})[0] == 401
    # A wrong Authorization is not overridden by a right X-API-Key: the middleware only fills a missing header.
    assert request(url, {"Authorization": "Bearer wrong", "X-API-Key": KEY})[0] == 401
    # /health stays open, as vLLM's own authentication leaves it.
    assert request(vllm_server.base_url + "/health")[0] == 200
    status, text = request(
        vllm_server.base_url + "/v1/chat/completions",
        {"X-API-Key": KEY},
        {"model": SERVED, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
    )
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"].strip()


def test_check_mode_creates_nothing(bed, tmp_path):
    prepare_namespace(bed, "llm")
    rc, output, recap = play(bed, tmp_path, "check", check=True)
    assert rc == 0, output[-6000:]
    assert recap["failed"] == 0
    assert "Check mode: nothing was created" in output
    assert objects(bed, "llm") == set()


def test_run_creates_the_objects_and_the_gate_passes_through_the_proxy(bed, tmp_path):
    rc, output, recap = play(
        bed,
        tmp_path,
        "run",
        {"vllm_serve_tensor_parallel_size": 2, "vllm_serve_pipeline_parallel_size": 3},
    )
    assert rc == 0, output[-8000:]
    assert recap["changed"] > 0
    assert {"Secret", "ConfigMap", "Deployment", "Service"} <= objects(bed, "llm")
    # The gate's real completion went through the API server's service proxy (key in X-API-Key).
    assert "Endpoint (in the cluster): http://llm-vllm.llm.svc:8000/v1" in output
    assert "A: " in output and "TP=2 PP=3" in output
    assert KEY not in output

    deployment = get(bed, "/apis/apps/v1/namespaces/llm/deployments/llm-vllm")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "localhost/llmops/ray-vllm:0.32.0-ray2.60.0"
    assert container["command"][:2] == ["bash", "-c"]
    script = container["command"][2]
    assert "ray start --address=llm-raycluster-head-svc.llm.svc:6379 --num-gpus=0" in script
    assert "--block &" in script
    # vLLM 0.32's GPU image runs its console script (the module form is for the CPU wheel, whose script fails).
    assert f"exec vllm serve {MODEL_PATH} " in script  # the model positionally: vLLM 0.32 deprecates --model there
    for part in (
        f"--served-model-name {SERVED}",
        "--tensor-parallel-size 2",
        "--pipeline-parallel-size 3",
        "--distributed-executor-backend ray",
        "--host 0.0.0.0",
        "--port 8000",
        f"--middleware {MIDDLEWARE}",
    ):
        assert part in script, part
    env = {item["name"]: item for item in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-vllm-api-key", "key": "api-key"}
    assert env["VLLM_HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["PYTHONPATH"]["value"] == "/etc/llmops/vllm-middleware"
    assert KEY not in json.dumps(deployment)
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "llm-models"
    assert volumes["middleware"]["configMap"]["name"] == "llm-vllm-middleware"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120
    assert {"app.kubernetes.io/managed-by", "app.kubernetes.io/instance"} <= set(deployment["metadata"]["labels"])

    configmap = get(bed, "/api/v1/namespaces/llm/configmaps/llm-vllm-middleware")
    source = (REPO / "roles" / "vllm_serve" / "files" / "llmops_api_key_header.py").read_text()
    assert configmap["data"]["llmops_api_key_header.py"] == source

    secret = get(bed, "/api/v1/namespaces/llm/secrets/llm-vllm-api-key")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == KEY
    # Not applied client-side: the key is not copied into an annotation `kubectl describe` prints.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in secret["metadata"].get("annotations", {})

    service = get(bed, "/api/v1/namespaces/llm/services/llm-vllm")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["name"] == "http" and service["spec"]["ports"][0]["port"] == 8000


def test_second_run_changes_nothing(bed, tmp_path):
    rc, output, recap = play(
        bed,
        tmp_path,
        "rerun",
        {"vllm_serve_tensor_parallel_size": 2, "vllm_serve_pipeline_parallel_size": 3},
    )
    assert rc == 0, output[-8000:]
    assert recap["changed"] == 0, output[-8000:]


def test_nodeport_variant(bed, tmp_path):
    prepare_namespace(bed, "np")
    rc, output, recap = play(
        bed,
        tmp_path,
        "nodeport",
        {"ray_vllm_namespace": "np", "vllm_serve_service_type": "NodePort", "vllm_serve_node_port": 30880},
    )
    assert rc == 0, output[-8000:]
    service = get(bed, "/api/v1/namespaces/np/services/llm-vllm")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30880


def test_a_generated_key_is_kept_and_never_printed(bed, tmp_path):
    prepare_namespace(bed, "keyed")
    # No backend behind keyed/llm-vllm: the Deployment gate passes, the completion gate fails after a few seconds.
    # The controller's copy at its default path, under a HOME of the test's own: one per namespace uid, so another
    # cluster's namespace "keyed" (another test bed running beside this one) keeps its own.
    home = tmp_path / "home"
    uid = get(bed, "/api/v1/namespaces/keyed")["metadata"]["uid"]
    copy = home / ".local" / "state" / "llmops.ray_vllm" / f"namespace-{uid}" / "llm-vllm-api-key"
    extra = {"ray_vllm_namespace": "keyed", "vllm_serve_api_key": "", "vllm_serve_startup_timeout": 6}
    rc, first_output, _recap = play(bed, tmp_path, "key1", extra, verbose=True, home=home)
    assert rc != 0
    assert "did not serve" in first_output and "Last log lines" in first_output
    secret = get(bed, "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    assert len(key) == 40 and key.isalnum()
    assert key not in first_output

    rc, second_output, _recap = play(bed, tmp_path, "key2", extra, verbose=True, home=home)
    assert rc != 0
    again = get(bed, "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")
    assert base64.b64decode(again["data"]["api-key"]).decode() == key
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    assert key not in second_output

    # The Secret deleted (a fault of issue 14): the controller's copy brings it back with the same key.
    assert copy.read_text() == key and copy.stat().st_mode & 0o777 == 0o600
    assert bed.request("DELETE", "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")[0] == 200
    rc, third_output, _recap = play(bed, tmp_path, "key3", extra, verbose=True, home=home)
    assert rc != 0
    restored = get(bed, "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")
    assert base64.b64decode(restored["data"]["api-key"]).decode() == key
    assert "the API key Secret keyed/llm-vllm-api-key was missing" in " ".join(third_output.split())
    assert key not in third_output


def test_chat_ui_lobechat(bed, tmp_path):
    rc, output, recap = play(bed, tmp_path, "chat", {"ray_vllm_chat_ui": True, "chat_ui_kind": "lobechat"})
    assert rc == 0, output[-8000:]
    assert {"ChatDeployment", "ChatService"} <= objects(bed, "llm")
    deployment = get(bed, "/apis/apps/v1/namespaces/llm/deployments/llm-chat")
    assert deployment["status"]["availableReplicas"] == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("lobehub/lobe-chat:")
    env = {item["name"]: item for item in container["env"]}
    assert env["OPENAI_PROXY_URL"]["value"] == "http://llm-vllm.llm.svc:8000/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-vllm-api-key", "key": "api-key"}
    assert env["OPENAI_MODEL_LIST"]["value"] == f"-all,+{SERVED}"
    assert KEY not in json.dumps(deployment)
    service = get(bed, "/api/v1/namespaces/llm/services/llm-chat")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 80
    assert recap["changed"] > 0

    rc, output, recap = play(bed, tmp_path, "chat-again", {"ray_vllm_chat_ui": True, "chat_ui_kind": "lobechat"})
    assert rc == 0, output[-8000:]
    assert recap["changed"] == 0, output[-8000:]


def test_chat_ui_open_webui_takes_its_settings_from_the_environment_at_every_start(bed, tmp_path):
    rc, output, recap = play(bed, tmp_path, "webui", {"ray_vllm_chat_ui": True, "chat_ui_kind": "open-webui"})
    assert rc == 0, output[-8000:]
    template = get(bed, "/apis/apps/v1/namespaces/llm/deployments/llm-chat")["spec"]["template"]
    env = {item["name"]: item for item in template["spec"]["containers"][0]["env"]}
    # Otherwise the data volume keeps the first OPENAI_* values, and a rotated key is ignored.
    assert env["ENABLE_PERSISTENT_CONFIG"]["value"] == "False"
    assert env["OPENAI_API_BASE_URL"]["value"] == "http://llm-vllm.llm.svc:8000/v1"
    # The key's hash (never the key) on the pod: a rotated key rolls the front end.
    secret = get(bed, "/api/v1/namespaces/llm/secrets/llm-vllm-api-key")
    expected = hashlib.sha256(secret["data"]["api-key"].encode()).hexdigest()
    assert template["metadata"]["annotations"]["llmops.ray-vllm/api-key-sha256"] == expected
    assert KEY not in json.dumps(template)


def test_teardown_keeps_the_secret_unless_asked(bed, tmp_path):
    rc, output, _recap = play(bed, tmp_path, "teardown", playbook=TEARDOWN)
    assert rc == 0, output[-8000:]
    assert objects(bed, "llm") == {"Secret"}

    rc, output, _recap = play(bed, tmp_path, "teardown-secret", {"vllm_serve_teardown_secret": True}, playbook=TEARDOWN)
    assert rc == 0, output[-8000:]
    assert objects(bed, "llm") == set()


# ---- several replicas: the plan's serve.engine is serve_llm ------------------------------------------------------
# In the namespace "serve": a Ray Serve LLM application on the RayCluster instead of the driver. KubeRay's head Service
# is made by hand (no RayCluster here) and leads to ServeDouble, Ray 2.60's Serve REST API as if Serve ran what was
# deployed; the completion comes from the real vLLM behind serve/llm-vllm:8000, as above.

SERVE_NS = "serve"


@pytest.fixture(scope="module")
def replicas_plan():
    """The plan plan_kubernetes.yml makes on the seed's two nodes for two CPU replicas of the demo model."""
    from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan as dp
    from ansible_collections.llmops.ray_vllm.plugins.module_utils._plan_inputs import kubernetes_cpu_pods, plan_request

    node = {"gpus": 1, "gpu_memory_mib": 81920, "gpu_product": "NVIDIA-A100-SXM4-80GB", "cpus": 32.0}
    nodes = [dict(node, name=f"gpu-worker-{index}", memory_mib=262044) for index in (1, 2)]
    request = plan_request(
        {
            "ray_vllm_device": "cpu",
            "ray_vllm_replicas": 2,
            "vllm_serve_max_model_len": 2048,
            "vllm_serve_cpu_kvcache_space_gib": 1,
        }
    )
    cpu_pods = kubernetes_cpu_pods(
        {"cpus": "4", "memory": "16Gi", "node_selector": {}},
        {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "32Gi"}}, "node_selector": {}},
    )
    config = json.loads((REPO / "tests" / "fixtures" / "models" / "smollm2-135m-instruct" / "config.json").read_text())
    params = dict(
        request["options"],
        nodes=nodes,
        platform="kubernetes",
        model_config=config,
        model_params_b=0.135,
        cpu_pods=cpu_pods,
        option_names=request["option_names"],
    )
    plan = dp.plan_from_options(params)
    assert (plan["serve"]["engine"], plan["replicas"]) == ("serve_llm", 2)
    return plan


@pytest.fixture(scope="module")
def serve_api(bed, vllm_server):
    from serve_double import ServeDouble

    with ServeDouble() as double:
        bed.admin(
            "PUT",
            "service-backends",
            {
                f"{SERVE_NS}/llm-raycluster-head-svc:8265": double.url,
                f"{SERVE_NS}/llm-vllm:8000": vllm_server.base_url,
            },
        )
        yield double


def make_head_service(bed):
    """KubeRay's head Service, as the RayCluster would have it (the mapping needs the Service to exist)."""
    body = {
        "metadata": {"name": "llm-raycluster-head-svc"},
        "spec": {
            "clusterIP": "None",
            "selector": {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": "head"},
            "ports": [{"name": "dashboard", "port": 8265}, {"name": "serve", "port": 8000}],
        },
    }
    status, answer = bed.request("POST", f"/api/v1/namespaces/{SERVE_NS}/services", body)
    assert status in (201, 409), answer


def serve_play(bed, tmp_path, name, plan=None, check=False, playbook=PLAYBOOK):
    extra = {"ray_vllm_namespace": SERVE_NS}
    if plan is not None:
        extra["vllm_serve_plan"] = plan
    rc, output, recap = play(bed, tmp_path, name, extra, check=check, playbook=playbook, verbose=check)
    return rc, " ".join(output.split()), recap


def test_serve_llm_check_mode_without_a_dashboard_says_what_would_be_deployed(bed, tmp_path, serve_api, replicas_plan):
    prepare_namespace(bed, SERVE_NS)
    rc, output, recap = serve_play(bed, tmp_path, "serve-check", replicas_plan, check=True)
    assert rc == 0 and recap["failed"] == 0, output[-6000:]
    assert (
        "the Ray dashboard of the RayCluster serve/llm-raycluster does not answer through the API server (the "
        "RayCluster is not up yet), so the Ray Serve LLM application llm would be deployed there once it is: 2 "
        f"replica(s) of {SERVED} with TP=1 PP=1 each, Serve's proxy on the head pod's port 8000 behind the Service "
        "llm-vllm" in output
    ), output[-6000:]
    assert objects(bed, SERVE_NS) == set() and serve_api.calls == []


def test_serve_llm_replaces_the_driver_of_an_earlier_plan_and_passes_the_gates(bed, tmp_path, serve_api, replicas_plan):
    make_head_service(bed)
    # An earlier plan with one engine: the driver Deployment and its ConfigMap.
    rc, output, recap = serve_play(bed, tmp_path, "serve-one-engine")
    assert rc == 0, output[-6000:]
    assert {"Deployment", "ConfigMap", "Service"} <= objects(bed, SERVE_NS)
    assert serve_api.applications == {}

    rc, output, recap = serve_play(bed, tmp_path, "serve-replicas", replicas_plan)
    assert rc == 0, output[-8000:]
    assert KEY not in output
    found = objects(bed, SERVE_NS)
    assert "Deployment" not in found and "ConfigMap" not in found and {"Secret", "Service"} <= found
    service = get(bed, f"/api/v1/namespaces/{SERVE_NS}/services/llm-vllm")
    assert service["spec"]["selector"] == {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": "head"}
    assert service["spec"]["ports"][0]["targetPort"] == 8000
    # The application serve_app deployed through the API server's proxy, its proxy on the head only.
    assert serve_api.instance == {"http_options": {"host": "0.0.0.0", "port": 8000}, "proxy_location": "HeadOnly"}
    config = serve_api.applications["llm"]
    (llm,) = config["args"]["llm_configs"]
    assert llm["model_loading_config"] == {"model_id": SERVED, "model_source": MODEL_PATH}
    assert llm["accelerator_config"] == {"kind": "cpu"}
    (deployment,) = config["deployments"]
    scaling = deployment["autoscaling_config"]
    assert (deployment["name"], scaling["min_replicas"], scaling["max_replicas"]) == (f"LLMServer:{SERVED}", 2, 2)
    assert config["runtime_env"]["working_dir"].removeprefix("gcs://") in serve_api.packages
    assert KEY not in json.dumps(config)
    # The gates: both replicas running (Serve's answer), then the real completion through llm-vllm.
    assert "Replicas: 2 behind Ray Serve (application llm on the RayCluster serve/llm-raycluster" in output
    assert "Endpoint (in the cluster): http://llm-vllm.serve.svc:8000/v1" in output and "A: " in output

    rc, output, recap = serve_play(bed, tmp_path, "serve-replicas-again", replicas_plan)
    assert rc == 0, output[-6000:]
    assert recap["changed"] == 0, output[-6000:]

    # --check with Serve running: compared with what Serve runs, nothing sent.
    deployed = len(serve_api.calls)
    rc, output, recap = serve_play(bed, tmp_path, "serve-replicas-check", replicas_plan, check=True)
    assert rc == 0, output[-6000:]
    compared = "the Serve application llm was compared with what Serve runs on the RayCluster serve/llm-raycluster"
    assert compared in output and "is deployed as asked" in output
    assert all(method == "GET" for method, _path in serve_api.calls[deployed:])


def test_a_one_engine_plan_deletes_the_serve_application_first(bed, tmp_path, serve_api):
    rc, output, recap = serve_play(bed, tmp_path, "serve-back-to-one")
    assert rc == 0, output[-6000:]
    assert ("DELETE", "/api/serve/applications/") in serve_api.calls
    assert serve_api.applications == {} and serve_api.instance is None
    assert {"Deployment", "ConfigMap", "Service"} <= objects(bed, SERVE_NS)
    service = get(bed, f"/api/v1/namespaces/{SERVE_NS}/services/llm-vllm")
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": "llm", "app.kubernetes.io/name": "vllm"}


def test_teardown_deletes_the_serve_application_before_the_objects(bed, tmp_path, serve_api, replicas_plan):
    rc, output, recap = serve_play(bed, tmp_path, "serve-replicas-before-teardown", replicas_plan)
    assert rc == 0, output[-6000:]
    assert "llm" in serve_api.applications
    rc, output, recap = serve_play(bed, tmp_path, "serve-teardown", playbook=TEARDOWN)
    assert rc == 0, output[-6000:]
    assert serve_api.applications == {} and serve_api.instance is None
    assert objects(bed, SERVE_NS) == {"Secret"}
