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


def play(bed, tmp_path, name, extra=None, check=False, playbook=PLAYBOOK, verbose=False):
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
    extra = {"ray_vllm_namespace": "keyed", "vllm_serve_api_key": "", "vllm_serve_startup_timeout": 6}
    rc, first_output, _recap = play(bed, tmp_path, "key1", extra, verbose=True)
    assert rc != 0
    assert "did not serve" in first_output and "Last log lines" in first_output
    secret = get(bed, "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    assert len(key) == 40 and key.isalnum()
    assert key not in first_output

    rc, second_output, _recap = play(bed, tmp_path, "key2", extra, verbose=True)
    assert rc != 0
    again = get(bed, "/api/v1/namespaces/keyed/secrets/llm-vllm-api-key")
    assert base64.b64decode(again["data"]["api-key"]).decode() == key
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    assert key not in second_output


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
