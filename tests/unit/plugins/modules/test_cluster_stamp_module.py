# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""cluster_stamp as Ansible runs it: a record written through a local HTTP server standing in for the API server (a
kubeconfig with a token points at it), then a look. The server answers the Nodes the test bed's API server listed
(tests/fixtures/kubernetes), the hand-made objects of test_cluster_stamp.py (no Deployment, RayCluster or ConfigMap is
recorded anywhere), and through its Services' proxy paths what a real Ray 2.60 dashboard and a real vLLM 0.32
answered (tests/fixtures/ray, vllm)."""

from __future__ import annotations

import copy
import http.server
import json
import threading

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.plugins.module_utils._cluster_stamp import RECORD_LABELS, parse_stamp
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import proxy_path
from ansible_collections.llmops.ray_vllm.plugins.modules import cluster_stamp
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.module_utils.test_cluster_stamp import (
    CLUSTER_POLICY,
    CONFIGMAP,
    KUBERAY_OPERATOR,
    OPERATOR_PATH,
    RAYCLUSTER,
    VLLM_DEPLOYMENT,
    recorded_nodes,
)
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.modules.test_deployment_stamp_module import (
    FIXTURES,
    HEAD_ID,
    RAY,
    SERVED,
    WORKER_ID,
    dashboard_answer,
    recorded,
    vllm_answer,
)
from ansible_collections.llmops.ray_vllm.tests.unit.plugins.modules.test_thin_modules import run

TOKEN = "deployer-token"
RECORD_PATH = "/api/v1/namespaces/llm/configmaps/llm-deployment-record"
RAY_PROXY = proxy_path("llm", "llm-raycluster-head-svc", "8265")
VLLM_PROXY = proxy_path("llm", "llm-vllm", "8000", "http")
SELECTOR = "labelSelector=app.kubernetes.io%2Fpart-of%3Dray-vllm"


def as_json(status, body):
    return status, "application/json", json.dumps(body).encode()


def listing(*objects):
    return as_json(
        200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [copy.deepcopy(o) for o in objects]}
    )


class ApiServer:
    """The API server: answers by method and path (the query kept apart), refuses a request without the kubeconfig's
    token as the API server does (401), creates and patches the record ConfigMap; every request kept as
    ``(method, path, query, JSON body or None, Content-Type)``."""

    def __init__(self):
        self.answers = {
            ("GET", "/api/v1/nodes"): as_json(200, recorded_nodes()),
            ("GET", "/apis/nvidia.com/v1/clusterpolicies"): listing(CLUSTER_POLICY),
            ("GET", "/api/v1/namespaces/llm/configmaps"): listing(CONFIGMAP),
            ("GET", "/apis/apps/v1/namespaces/llm/deployments"): listing(VLLM_DEPLOYMENT),
            ("GET", "/apis/ray.io/v1/namespaces/llm/rayclusters"): listing(RAYCLUSTER),
            ("GET", OPERATOR_PATH): as_json(200, KUBERAY_OPERATOR),
            ("GET", RAY_PROXY + "/api/cluster_status"): dashboard_answer(
                RAY, "idle-dashboard-cluster-status-format1.json"
            ),
            ("GET", RAY_PROXY + "/api/v0/nodes"): dashboard_answer(RAY, "idle-dashboard-v0-nodes-detail.json"),
            ("GET", VLLM_PROXY + "/health"): vllm_answer("health-200.json"),
            ("GET", VLLM_PROXY + "/version"): vllm_answer("version.json"),
            ("GET", VLLM_PROXY + "/metrics"): vllm_answer("metrics-idle.txt"),
            ("GET", VLLM_PROXY + "/v1/models"): vllm_answer("models-200.json"),
            ("POST", VLLM_PROXY + "/v1/chat/completions"): vllm_answer("chat-200.json"),
        }
        for plural in ("secrets", "services", "persistentvolumeclaims"):
            self.answers[("GET", "/api/v1/namespaces/llm/" + plural)] = listing()
        for path in (
            "networking.k8s.io/v1/namespaces/llm/networkpolicies",
            "networking.k8s.io/v1/namespaces/llm/ingresses",
        ):
            self.answers[("GET", "/apis/" + path)] = listing()
        self.answers[("GET", "/apis/ray.io/v1/namespaces/llm/rayservices")] = listing()
        self.asked = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                text = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _mark, query = self.path.partition("?")
                body = json.loads(text) if text else None
                server.asked.append((self.command, path, query, body, self.headers.get("Content-Type")))
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    status, kind, data = as_json(401, {"kind": "Status", "message": "Unauthorized", "code": 401})
                else:
                    status, kind, data = server.respond(self.command, path, body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def respond(self, method, path, body):
        if (method, path) == ("POST", "/api/v1/namespaces/llm/configmaps"):
            self.answers[("GET", RECORD_PATH)] = as_json(200, body)
            return as_json(201, body)
        if (method, path) == ("PATCH", RECORD_PATH):
            configmap = json.loads(self.answers[("GET", RECORD_PATH)][2])
            configmap["metadata"]["labels"].update(body["metadata"]["labels"])
            configmap["data"].update(body["data"])
            self.answers[("GET", RECORD_PATH)] = as_json(200, configmap)
            return as_json(200, configmap)
        if (method, path) in self.answers:
            return self.answers[(method, path)]
        # A resource not served (a CRD not installed) or an object not there: the API server's 404.
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"

    def writes(self):
        return [(method, path, body, kind) for method, path, _query, body, kind in self.asked if method != "GET"]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = ApiServer()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(tmp_path, api):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": api.url}}],
        "users": [{"name": "deployer", "user": {"token": TOKEN}}],
        "contexts": [{"name": "deployer", "context": {"cluster": "local", "user": "deployer", "namespace": "llm"}}],
        "current-context": "deployer",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


HEAD = {
    "dashboard": {"namespace": "llm", "name": "llm-raycluster-head-svc", "port": "8265"},
    "vllm": {"namespace": "llm", "name": "llm-vllm", "port": "8000", "scheme": "http"},
    "endpoint": "http://llm-vllm.llm.svc:8000/v1",
    "model": SERVED,
}
OPERATOR = {"namespace": "kuberay-system", "name": "kuberay-operator"}


def args(kubeconfig, **more):
    return dict(dict(name="llm-deployment-record", namespace="llm", digest="d1", kubeconfig=kubeconfig), **more)


def record(kubeconfig, capsys, check=False, **more):
    return run(cluster_stamp, args(kubeconfig, action="record", objects=[OPERATOR], **more), capsys, check=check)


def look(kubeconfig, capsys, digest="d1"):
    return run(cluster_stamp, args(kubeconfig, digest=digest), capsys)


def written_record(api):
    [(method, path, configmap, kind)] = api.writes()
    assert (method, path, kind) == ("POST", "/api/v1/namespaces/llm/configmaps", "application/json")
    return configmap


# --- without a cluster ---------------------------------------------------------------------------------------------


def test_the_endpoint_names_the_service_the_client_url_the_model_and_the_question():
    head = dict(HEAD, prompt="Who wrote Hamlet?")
    assert cluster_stamp.endpoint_result(head) == {
        "url": "Service llm/llm-vllm:8000",
        "endpoint": "http://llm-vllm.llm.svc:8000/v1",
        "model": SERVED,
        "question": "Who wrote Hamlet?",
    }
    bare = dict(head, vllm={"namespace": "llm", "name": "llm-vllm"}, endpoint=None)
    assert cluster_stamp.endpoint_result(bare)["url"] == "Service llm/llm-vllm:"
    assert cluster_stamp.endpoint_result(bare)["endpoint"] == ""


def shape(spec):
    return {
        name: (value.get("type", "str"), value.get("default"), value.get("choices"), bool(value.get("required")))
        for name, value in spec.items()
    }


def test_documentation_matches_the_argument_spec():
    # No generic test checks modules' specs against their docs (test_deployment_plan_module.py has its own).
    options = yaml.safe_load(cluster_stamp.DOCUMENTATION)["options"]
    assert shape(options) == shape(cluster_stamp.ARGUMENT_SPEC)
    assert shape(options["objects"]["suboptions"]) == shape(cluster_stamp.REF_OPTIONS)
    assert shape(options["head"]["suboptions"]) == shape(cluster_stamp.HEAD_OPTIONS)
    assert shape(options["model"]["suboptions"]) == shape(cluster_stamp.MODEL_OPTIONS)
    for name, spec in cluster_stamp.ARGUMENT_SPEC.items():
        assert spec.get("elements") == options[name].get("elements"), name


def test_documentation_returns_every_key_a_look_returns(api, kubeconfig, capsys):
    record(kubeconfig, capsys, head=HEAD)
    result = look(kubeconfig, capsys)
    assert set(result) - {"changed", "invocation"} == set(yaml.safe_load(cluster_stamp.RETURN))


# --- the record ----------------------------------------------------------------------------------------------------


def test_a_record_is_created_with_the_record_labels_and_what_the_cluster_holds(api, kubeconfig, capsys):
    result = record(kubeconfig, capsys)
    assert (result["changed"], result["written"], result["current"], result["differences"]) == (False, True, False, [])
    configmap = written_record(api)
    assert configmap["metadata"] == {"name": "llm-deployment-record", "namespace": "llm", "labels": RECORD_LABELS}
    stamp = parse_stamp(configmap["data"])
    assert (stamp["digest"], stamp["namespaces"], stamp["head"]) == ("d1", ["llm"], None)
    assert sorted(stamp["nodes"]) == [
        "control-plane-1",
        "control-plane-2",
        "control-plane-3",
        "gpu-worker-1",
        "gpu-worker-2",
    ]
    assert sorted(stamp["objects"]) == [
        "ClusterPolicy cluster-policy",
        "ConfigMap llm/llm-vllm-config",
        "Deployment llm/llm-vllm",
        "RayCluster llm/llm-raycluster",
    ]
    assert stamp["named_refs"] == [dict(OPERATOR, api_version="apps/v1", kind="Deployment")]
    assert list(stamp["named"]) == ["Deployment kuberay-system/kuberay-operator"]
    # The namespaces' objects are listed by the roles' label, so the record's own ConfigMap is never among them.
    configmaps = "/api/v1/namespaces/llm/configmaps"
    listed = [query for method, path, query, _b, _k in api.asked if (method, path) == ("GET", configmaps)]
    assert listed == [SELECTOR]


def test_a_record_with_a_head_and_a_model_holds_the_ray_nodes_alive_and_the_claim(api, kubeconfig, capsys):
    model = {"claim": "llm-models", "path": "/models/SmolLM2-135M-Instruct", "claim_root": "/models"}
    assert record(kubeconfig, capsys, head=HEAD, model=model)["written"] is True
    stamp = parse_stamp(written_record(api)["data"])
    assert stamp["head"] == dict(HEAD, node_ids=[HEAD_ID, WORKER_ID], prompt="Say hello.", max_tokens=16)
    assert stamp["model"] == dict(model, namespace="llm")


def test_a_record_of_the_same_cluster_again_is_not_written_and_a_changed_one_is_patched(api, kubeconfig, capsys):
    record(kubeconfig, capsys)
    again = record(kubeconfig, capsys)
    assert (again["written"], again["changed"], len(api.writes())) == (False, False, 1)
    changed = record(kubeconfig, capsys, digest="d2")
    assert changed["written"] is True
    method, path, body, kind = api.writes()[-1]
    assert (method, path, kind) == ("PATCH", RECORD_PATH, "application/merge-patch+json")
    assert body["metadata"] == {"labels": RECORD_LABELS} and parse_stamp(body["data"])["digest"] == "d2"


def test_a_record_in_check_mode_writes_nothing(api, kubeconfig, capsys):
    result = record(kubeconfig, capsys, check=True)
    assert (result["written"], result["changed"], api.writes()) == (False, False, [])


# --- the look ------------------------------------------------------------------------------------------------------


def test_a_look_after_a_record_without_a_head_stands_without_asking_ray_or_vllm(api, kubeconfig, capsys):
    record(kubeconfig, capsys)
    api.asked.clear()
    result = look(kubeconfig, capsys)
    assert (result["current"], result["differences"], result["changed"], result["written"]) == (True, [], False, False)
    assert "answer" not in result and "endpoint" not in result
    assert not [path for _m, path, *_rest in api.asked if "/proxy" in path] and api.writes() == []


def test_a_look_after_a_record_with_a_head_stands_and_returns_vllms_answer(api, kubeconfig, capsys):
    record(kubeconfig, capsys, head=HEAD)
    result = look(kubeconfig, capsys)
    assert (result["current"], result["differences"]) == (True, [])
    chat = json.loads(json.loads(recorded(FIXTURES / "vllm" / "chat-200.json"))["body"])
    assert result["answer"]["text"] == chat["choices"][0]["message"]["content"]
    assert result["endpoint"] == {
        "url": "Service llm/llm-vllm:8000",
        "endpoint": "http://llm-vllm.llm.svc:8000/v1",
        "model": SERVED,
        "question": "Say hello.",
    }


def test_a_look_names_a_listed_object_made_again(api, kubeconfig, capsys):
    record(kubeconfig, capsys)
    again = copy.deepcopy(VLLM_DEPLOYMENT)
    again["metadata"]["uid"] = "5d0c7f0e-2222-4a4a-9a9a-000000000001"  # deleted and created again
    api.answers[("GET", "/apis/apps/v1/namespaces/llm/deployments")] = listing(again)
    result = look(kubeconfig, capsys)
    assert (result["current"], result["differences"]) == (
        False,
        [
            "Deployment llm/llm-vllm was made again since the last full run (uid 5d0c7f0e-2222-4a4a-9a9a-000000000001, "
            "was 5d0c7f0e-1111-4a4a-9a9a-000000000001)"
        ],
    )


def test_a_look_without_a_record_or_with_another_digest_differs(api, kubeconfig, capsys):
    assert look(kubeconfig, capsys)["differences"] == ["no record of a full run in the cluster"]
    record(kubeconfig, capsys)
    assert look(kubeconfig, capsys, digest="d2")["differences"] == [
        "the settings or the collection changed since the last full run"
    ]


def test_a_look_refused_a_list_could_not_finish_and_names_the_grant(api, kubeconfig, capsys):
    record(kubeconfig, capsys)
    api.answers[("GET", "/api/v1/nodes")] = as_json(
        403,
        {
            "kind": "Status",
            "message": 'nodes is forbidden: User "system:serviceaccount:llm:deployer" cannot list resource "nodes" in '
            'API group "" at the cluster scope',
            "reason": "Forbidden",
            "code": 403,
        },
    )
    result = look(kubeconfig, capsys)
    assert (result["current"], result["differences"]) == (
        False,
        [
            "the look could not finish: the API server answered 403 to GET /api/v1/nodes: nodes is forbidden: User "
            '"system:serviceaccount:llm:deployer" cannot list resource "nodes" in API group "" at the cluster scope. '
            "Fix: grant list on nodes (docs/least-privilege.md), or set ray_vllm_fast_rerun=false"
        ],
    )
