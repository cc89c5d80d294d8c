# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""`site.yml -i inventories/prod` with GPU plans against the emulated seed clusters (tests/k8s_testbed), gates to
real servers.

The test bed plays the cluster (API server, scheduler, kubelet, KubeRay, GPU operator) and runs these pods as
records: GPU plans ask for nvidia.com/gpu and vLLM's GPU command line, which the local CPU image cannot serve. So
the two things the gates must really reach run on this machine and are mapped to the Services the roles create: a
real Ray cluster whose workers offer one GPU each behind `llm-raycluster-head-svc:8265`, and a real vLLM CPU server
with the API-key middleware behind `llm-vllm:8000` (`keyed_vllm` in conftest.py). Every manifest the roles send is
validated by the test bed (built-in schemas and the KubeRay CRD schema; unknown fields are refused).

The 64-node seed's plan serves 256 replicas with Ray Serve LLM: there the dashboard's Serve REST API is answered by
serve_double.ServeDouble (Ray 2.60's answers, as if Serve ran every replica deployed; the Ray gate's requests go on
to the real Ray cluster), so the test reads the application serve_app deployed through the API server's proxy.

The seed deployment with pods that run (--check, converge, changed=0, faults, teardown) is
test_site_kubernetes_pods.py and molecule/kubernetes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import secret_scan
import testbed_backends
import yaml
from conftest import SHARED_VLLM_KEY
from playbook_runner import REPO, run_playbook
from serve_double import ServeDouble
from testbed_images import image_check_outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import seeding
from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

NAMESPACE = "llm"
API_KEY = SHARED_VLLM_KEY
SERVED = "deepseek-r1-distill-llama-70b"  # inventories/prod serves the seed model under this name
HUB_TOKEN = "ms-scan0test0token0c4ca4238a0b923820dcc"  # given to one run, needed by none: it must show nowhere
# The least-privilege deployer (docs/rbac/least-privilege.yaml, bound by playbooks/rbac.yml).
DEPLOYER = "system:serviceaccount:llm:ray-vllm-deployer"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _list(bed, path):
    status, body = bed.request("GET", path)
    assert status in (200, 404), body
    return body.get("items", []) if status == 200 else []


def _map_backends(bed, dashboard_url, vllm):
    testbed_backends.map_backends(bed, dashboard_url, vllm.base_url, NAMESPACE)


def _site(bed, log_dir, name, *extra, kubeconfig=None):
    """site.yml as the test bed's admin, or as the user of ``kubeconfig`` (with no way to the admin's token)."""
    kubeconfig = kubeconfig or bed.kubeconfig
    env = dict(bed.env(), KUBECONFIG=kubeconfig, K8S_AUTH_KUBECONFIG=kubeconfig)
    args = ["-e", f"ray_vllm_kubeconfig={kubeconfig}", "-e", f"vllm_serve_api_key={API_KEY}", *extra]
    # The emulated pods' exec runs on this machine, where the model volume's files are not (tests/k8s_testbed/README):
    # model_storage's look at them is proved on pods that run (test_site_kubernetes_pods.py).
    args += ["-e", "model_storage_look_from_pods=false"]
    return run_playbook(
        "site.yml", inventory="inventories/prod", extra_args=args, env=env, log_path=Path(log_dir) / f"{name}.log"
    )


def _deployer_kubeconfig(bed, log_dir):
    """The admin applies the least privilege (docs/least-privilege.md) with playbooks/rbac.yml; a kubeconfig of the
    deployer ServiceAccount's token."""
    rc, output, _recap = run_playbook(
        "playbooks/rbac.yml",
        inventory="inventories/prod",
        extra_args=["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}"],
        env=bed.env(),
        log_path=Path(log_dir) / "rbac.log",
    )
    assert rc == 0, output[-6000:]
    token = bed.mint_token(service_account=f"{NAMESPACE}/ray-vllm-deployer")
    return bed.kubeconfig_for(token, Path(log_dir) / "deployer.kubeconfig")


def _seed_with_the_monitor_crds(seed, folder):
    """The seed as a file in ``folder`` with the Prometheus Operator's PodMonitor and ServiceMonitor CRDs installed
    (``platform.prometheus_operator: installed``, tests/k8s_testbed/seeding.py), under the same name."""
    described = seeding.load_seed(seed)
    described.setdefault("platform", {})["prometheus_operator"] = "installed"
    path = Path(folder) / f"{seed}.yaml"
    path.write_text(yaml.safe_dump(described))
    return str(path)


MONITORING = "/apis/monitoring.coreos.com/v1/namespaces/" + NAMESPACE


def _check_the_monitoring(bed, output, serve_llm):
    """ray_vllm_monitoring on through site.yml (playbooks/kubernetes.yml): the PodMonitors of the Ray head and
    workers and the dashboard ConfigMap are there. The ServiceMonitor scrapes vLLM's Service for one engine; with Ray
    Serve LLM there is none (the vLLM Service leads to Serve's proxy, the engines export through the Ray pods'
    metrics ports)."""
    text = " ".join(output.split())
    assert "PodMonitor llm/llm-ray-head:" in text, text[-6000:]
    if serve_llm:
        assert "No ServiceMonitor: Ray Serve LLM serves the replicas" in text, text[-6000:]
    monitors = {m["metadata"]["name"]: m["spec"] for m in _list(bed, f"{MONITORING}/podmonitors")}
    assert sorted(monitors) == ["llm-ray-head", "llm-ray-workers"], sorted(monitors)
    for name, node_type in (("llm-ray-head", "head"), ("llm-ray-workers", "worker")):
        selector = monitors[name]["selector"]["matchLabels"]
        assert selector == {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": node_type}, selector
    head_ports = [endpoint["port"] for endpoint in monitors["llm-ray-head"]["podMetricsEndpoints"]]
    assert head_ports == ["metrics", "as-metrics", "dash-metrics"], head_ports
    service_monitors = {m["metadata"]["name"]: m["spec"] for m in _list(bed, f"{MONITORING}/servicemonitors")}
    if serve_llm:
        assert service_monitors == {}, service_monitors
    else:
        assert sorted(service_monitors) == ["llm-vllm"], sorted(service_monitors)
        endpoints = service_monitors["llm-vllm"]["endpoints"]
        assert [endpoint.get("path") for endpoint in endpoints] == ["/metrics"], endpoints
    status, configmap = bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/llm-grafana-dashboard")
    assert status == 200, configmap
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = (REPO / "roles" / "monitoring" / "files" / "ray-vllm-dashboard.json").read_text()
    assert json.loads(configmap["data"]["ray-vllm-dashboard.json"]) == json.loads(dashboard)


@pytest.fixture(scope="module")
def three_gpu_ray():
    """A head and three workers with one GPU each (testbed_backends.three_gpu_ray_cluster), once for the module."""
    with testbed_backends.three_gpu_ray_cluster() as cluster:
        yield cluster


@pytest.mark.parametrize("seed", ["gpu-nodes-3", "gpu-nodes-64"])
def test_site_converges_on_the_seeds(seed, tmp_path, three_gpu_ray, keyed_vllm):
    """The plan chooses the GPU layout for 3 A100 nodes (the seed's question) and 64 nodes of 8 H200s; the gates
    reach real Ray and vLLM processes mapped to the Services. (The two-node seed's GPU layout reaches the roles in
    test_ray_cluster_k8s.py and test_vllm_serve_k8s.py; its deployment with pods that run is molecule/kubernetes.)

    Why a mapping here and not the pods that run (test_site_kubernetes_pods.py, molecule/kubernetes): these are GPU
    plans, whose pods ask for nvidia.com/gpu and run vLLM's GPU command line, which the CPU image cannot serve; and
    the 64-node plan asks for 257 Ray nodes, more than this machine runs.

    On 3 nodes the plan uses every GPU (PP=3) for one engine, the vLLM driver Deployment: the local Ray cluster has
    exactly those 4 nodes and 3 GPUs. On 64 nodes the plan serves 256 replicas of TP=2 with Ray Serve LLM: the
    RayCluster's worker group holds all of them (4 pods of 2 GPUs on every node, a fixed count, so no autoscaler),
    no driver is made, the Service selects the Ray head's Serve proxy and the application goes to the dashboard
    through the API server's proxy (to ServeDouble, which runs no replica). The Ray gate's expectations are lowered to
    the local cluster's size there, and the test checks what KubeRay placed and what Serve was given instead.
    """
    least_privilege = seed == "gpu-nodes-3"
    # Both runs turn ray_vllm_monitoring on, on a cluster with the Prometheus Operator's CRDs; the 3-node one as the
    # least-privilege deployer, whose rules (docs/rbac/least-privilege.yaml) cover the monitors.
    bed = RunningTestBed(tmp_path / "testbed", seed=_seed_with_the_monitor_crds(seed, tmp_path), rbac=least_privilege)
    with bed, ServeDouble(three_gpu_ray.dashboard_url) as serve:
        bed.admin("POST", "outcomes", image_check_outcome())
        extra = []
        kubeconfig = _deployer_kubeconfig(bed, tmp_path) if least_privilege else None
        if seed == "gpu-nodes-64":
            _map_backends(bed, serve.url, keyed_vllm)
            extra = ["-e", "ray_cluster_expected_nodes=4", "-e", "ray_cluster_expected_gpus=3"]
        else:
            _map_backends(bed, three_gpu_ray.dashboard_url, keyed_vllm)
            # At -vvv every module's arguments and results are printed; with a hub token as well, no secret may show.
            extra = ["-vvv", "-e", f"model_storage_token={HUB_TOKEN}"]
        rc, output, recap = _site(bed, tmp_path, "run", *extra, "-e", "ray_vllm_monitoring=true", kubeconfig=kubeconfig)
        assert rc == 0, output[-12000:] + "\n--- test bed ---\n" + bed.server_log()[-3000:]
        assert API_KEY not in output
        if least_privilege:
            _assert_every_request_was_the_deployers_and_allowed(bed)
            _assert_no_secret_shows(bed, output)
        cluster = _list(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters")[0]
        group = cluster["spec"]["workerGroupSpecs"][0]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        pods = _list(bed, f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=ray.io/node-type%3Dworker")
        assert len(pods) == group["replicas"] and all(p["status"]["phase"] == "Running" for p in pods)
        listed = {d["metadata"]["name"]: d for d in _list(bed, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")}
        service = bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/services/llm-vllm")[1]
        if seed == "gpu-nodes-3":
            command = json.dumps(listed["llm-vllm"]["spec"]["template"])
            assert (group["replicas"], str(limits["nvidia.com/gpu"])) == (3, "1")
            assert re.search(r"--pipeline-parallel-size\W+3\b", command), command
            assert len({p["spec"]["nodeName"] for p in pods}) == group["replicas"]  # one worker pod per GPU node
            assert service["spec"]["selector"]["app.kubernetes.io/name"] == "vllm"
            assert serve.calls == []
            _check_the_network_policies_and_the_driver_pod(bed, listed["llm-vllm"])
            _check_the_monitoring(bed, output, serve_llm=False)
            _check_the_rerun_looks_once(bed, kubeconfig, tmp_path, [arg for arg in extra if arg != "-vvv"])
            _check_a_support_bundle_on_demand(bed, tmp_path)
            _check_the_teardown_as_the_deployer(bed, kubeconfig, tmp_path)
            _check_a_missing_rule_is_named(bed, kubeconfig, tmp_path)
            return
        _check_the_serve_llm_deployment(output, cluster, pods, listed, service, serve)
        _check_the_monitoring(bed, output, serve_llm=True)


RECORD = f"/api/v1/namespaces/{NAMESPACE}/configmaps/llm-deployment-record"
STANDS = "The deployment stands as the last full run left it"


def _check_the_rerun_looks_once(bed, kubeconfig, log_dir, extra):
    """Issue 18 on the test bed, as the least-privilege deployer: the full run left its record (no secret in it);
    a re-run's one look finds the deployment standing and ends the play, changed=0, with vLLM's answer. The vLLM
    Deployment deleted is named by --check's look, and the full run that follows makes it again and records anew.
    ``extra``: the first run's variables (another value would be a change of settings, which the look names)."""
    extra = [*extra, "-e", "ray_vllm_monitoring=true"]
    status, record = bed.request("GET", RECORD)
    assert status == 200, record
    text = record["data"]["record.json"]
    assert API_KEY not in text and "Deployment llm/llm-vllm" in text, text[:3000]
    rc, output, recap = _site(bed, log_dir, "rerun", *extra, kubeconfig=kubeconfig)
    flat = " ".join(output.split())
    assert rc == 0 and recap["localhost"]["changed"] == 0, output[-6000:]
    assert STANDS in flat and "A: " in flat, flat[-4000:]
    assert "Plan the RayCluster" not in output, "the roles ran although the deployment stood"
    _assert_every_request_was_the_deployers_and_allowed(bed)

    status, _body = bed.request("DELETE", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-vllm")
    assert status == 200, _body
    rc, output, recap = _site(bed, log_dir, "deleted-check", "--check", *extra, kubeconfig=kubeconfig)
    flat = " ".join(output.split())
    assert rc == 0, output[-6000:]
    assert "Deployment llm/llm-vllm is gone (it was there after the last full run)" in flat, flat[-6000:]
    rc, output, recap = _site(bed, log_dir, "deleted-heal", *extra, kubeconfig=kubeconfig)
    assert rc == 0 and recap["localhost"]["changed"] > 0, output[-6000:]
    assert bed.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-vllm")[0] == 200
    rc, output, recap = _site(bed, log_dir, "rerun-after-heal", *extra, kubeconfig=kubeconfig)
    assert rc == 0 and recap["localhost"]["changed"] == 0 and STANDS in " ".join(output.split()), output[-6000:]
    _assert_every_request_was_the_deployers_and_allowed(bed)


def _check_the_teardown_as_the_deployer(bed, kubeconfig, log_dir):
    """playbooks/teardown.yml needs no more than site.yml's least privilege: the monitors, the RayCluster and the vLLM
    Deployment are gone, and the test bed refused none of the deployer's requests."""
    env = dict(bed.env(), KUBECONFIG=kubeconfig, K8S_AUTH_KUBECONFIG=kubeconfig)
    rc, output, _recap = run_playbook(
        "playbooks/teardown.yml", inventory="inventories/prod", extra_args=["-e", f"ray_vllm_kubeconfig={kubeconfig}"],
        env=env, log_path=Path(log_dir) / "teardown.log",
    )  # fmt: skip
    assert rc == 0, output[-8000:]
    _assert_every_request_was_the_deployers_and_allowed(bed)
    assert _list(bed, f"{MONITORING}/podmonitors") == [] and _list(bed, f"{MONITORING}/servicemonitors") == []
    assert _list(bed, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters") == []
    deployments = [d["metadata"]["name"] for d in _list(bed, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")]
    assert "llm-vllm" not in deployments, deployments
    assert bed.request("GET", RECORD)[0] == 404, "the teardown left the record of the last full run"


def _assert_every_request_was_the_deployers_and_allowed(bed):
    """The run as the ServiceAccount that playbooks/rbac.yml binds to docs/rbac/least-privilege.yaml: the test bed
    enforced RBAC (tests/k8s_testbed/rbac.py) and refused none of its requests."""
    audit = bed.admin("GET", "rbac")["audit"]
    refused = [entry for entry in audit if not entry["allowed"]]
    assert not refused, json.dumps(refused, indent=1)
    assert {entry["user"] for entry in audit} == {DEPLOYER}


def _without_rule(bed, path, match):
    """Remove the rules for which ``match(rule)`` holds from the Role or ClusterRole at ``path`` (admin token)."""
    status, role = bed.request("GET", path)
    assert status == 200, role
    kept = [rule for rule in role["rules"] if not match(rule)]
    assert len(kept) < len(role["rules"]), role["rules"]
    status, body = bed.request("PATCH", path, {"rules": kept}, content_type="application/merge-patch+json")
    assert status == 200, body


def _check_a_missing_rule_is_named(bed, kubeconfig, log_dir):
    """With one rule of the least privilege taken away, the run fails at the first task that needs it, naming the
    verb and resource: kubernetes.core's message for the objects it reads, the collection's (_kube_refusal) for the
    gates through the API server's service proxy, where a 403 would otherwise read as a wrong Ray token."""
    _without_rule(bed, f"{RBAC}/clusterroles/ray-vllm-deployer", lambda rule: "storageclasses" in rule["resources"])
    rc, output, _recap = _site(bed, log_dir, "no-storageclasses", kubeconfig=kubeconfig)
    text = " ".join(output.split()).replace('\\"', '"')
    assert rc != 0, output[-6000:]
    assert f'User "{DEPLOYER}" cannot list resource "storageclasses" in API group "storage.k8s.io"' in text, text[
        -6000:
    ]

    role = f"{RBAC}/namespaces/{NAMESPACE}/roles/ray-vllm-deployer"
    _without_rule(bed, role, lambda rule: "services/proxy" in rule["resources"])
    rc, output, _recap = run_playbook(
        "tests/integration/playbooks/ray_status_service.yml",
        inventory="localhost,",
        extra_args=["-c", "local", "-e", f"ray_vllm_kubeconfig={kubeconfig}", "-e", f"python={sys.executable}"],
        env=dict(bed.env(), KUBECONFIG=kubeconfig, K8S_AUTH_KUBECONFIG=kubeconfig),
        log_path=Path(log_dir) / "no-proxy.log",
    )
    text = " ".join(output.split()).replace('\\"', '"')
    assert rc != 0, output[-6000:]
    assert "403 Forbidden, a permission problem of the kubeconfig's user" in text, text[-6000:]
    assert 'cannot get resource "services/proxy" in API group "" in the namespace "llm"' in text, text[-6000:]
    assert "Ray token" not in text


def _assert_no_secret_shows(bed, output):
    """The API key, the Ray token and the hub token are in none of: the -vvv play output, the objects the roles made
    (every kind but Secret), the pods' logs and the test bed's own log."""
    status, secret = bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/llm-ray-auth")
    assert status == 200, secret
    secrets = {
        "the API key": API_KEY,
        "the Ray token": base64.b64decode(secret["data"]["auth_token"]).decode(),
        "the hub token": HUB_TOKEN,
    }
    places = {"the -vvv play output": output, "the test bed's log": bed.server_log()}
    places.update(secret_scan.cluster_objects(bed))
    for pod in _list(bed, f"/api/v1/namespaces/{NAMESPACE}/pods"):
        name = pod["metadata"]["name"]
        places[f"the log of pod {name}"] = str(bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/log")[1])
    assert any(place.startswith("RayCluster ") for place in places), sorted(places)
    assert secret_scan.leaks(secrets, places) == []


def _check_a_support_bundle_on_demand(bed, tmp_path):
    """playbooks/support_bundle.yml after the site run: the release's pods, the RayCluster, the GPU facts and Ray's
    status through the service proxy, in a 0600 tarball without the API key or the Ray token."""
    start = time.monotonic()
    args = ["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}", "-e", f"support_bundle_dir={tmp_path / 'support'}"]
    rc, out, recap = run_playbook(
        "playbooks/support_bundle.yml", inventory="inventories/prod", extra_args=args, env=bed.env(),
        log_path=tmp_path / "support-bundle.log",
    )  # fmt: skip
    assert rc == 0, out[-6000:]
    (path,) = (tmp_path / "support").glob("llmops-support-llm-*.tar.gz")
    assert f"Support bundle: {path}" in " ".join(out.split()) and path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(path) as archive:
        members = {
            member.name.split("/", 1)[1]: archive.extractfile(member).read().decode(errors="replace")
            for member in archive.getmembers()
            if member.isfile()
        }
    pods = {name.split("/")[2] for name in members if name.startswith("kubernetes/pods/")}
    assert [pod for pod in pods if pod.startswith("llm-vllm-")], sorted(pods)
    assert [pod for pod in pods if pod.startswith("llm-raycluster-head-")], sorted(pods)
    assert {"gate.json", "kubernetes/raycluster.json", "nodes/gpu_node_facts.json", "ray/status.json"} <= set(members)
    assert json.loads(members["ray/status.json"])["nodes"], members["ray/status.json"]
    assert "NVIDIA-A100" in members["nodes/gpu_node_facts.json"]
    secret = bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/llm-ray-auth")[1]
    token = binascii.a2b_base64(secret["data"]["auth_token"]).decode()
    leaks = [name for name, text in members.items() if API_KEY in text or token in text]
    assert leaks == [], leaks
    print("support bundle on demand on the test bed took %.1f s" % (time.monotonic() - start))


def _check_the_network_policies_and_the_driver_pod(bed, deployment):
    """The Ray pods admit the release's pods and the proxy's ports; the driver pod, its Service's port; the driver
    runs locked down without a service account token."""
    path = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
    policies = {p["metadata"]["name"]: p["spec"] for p in _list(bed, path)}
    own = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ray-vllm", "app.kubernetes.io/instance": "llm"}}
    }
    ray, vllm = policies["llm-raycluster"], policies["llm-vllm"]
    assert ray["podSelector"] == {"matchLabels": {"ray.io/cluster": "llm-raycluster"}}
    assert ray["ingress"] == [
        {"from": [own]},
        {"ports": [{"port": 8265, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]},
    ]
    assert vllm["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "llm", "app.kubernetes.io/name": "vllm"}
    }
    assert vllm["ingress"] == [{"from": [own]}, {"ports": [{"port": 8000, "protocol": "TCP"}]}]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_a_namespace_enforcing_a_stricter_level_is_refused_before_any_change(tmp_path):
    with RunningTestBed(tmp_path / "testbed") as bed:
        label = {"pod-security.kubernetes.io/enforce": "restricted"}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": label}}
        assert bed.request("POST", "/api/v1/namespaces", namespace)[0] == 201
        rc, output, recap = _site(bed, tmp_path, "strict")
        text = " ".join(output.split())
        assert rc != 0 and "pod-security.kubernetes.io/enforce=restricted" in text, output[-4000:]
        assert "need Pod Security level baseline" in text and "--overwrite" in text, output[-4000:]
        assert recap["localhost"]["changed"] == 0
        status, seen = bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}")
        assert seen["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert _list(bed, f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims") == []


def _check_the_serve_llm_deployment(output, cluster, pods, deployments, service, serve):
    """gpu-nodes-64: 256 replicas of TP=2 (2 H200s each) behind one endpoint."""
    group = cluster["spec"]["workerGroupSpecs"][0]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    # The worker group holds every replica: 256 pods of 2 GPUs, 4 on each of the 64 nodes; a fixed count.
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (256, 256, 256)
    assert str(limits["nvidia.com/gpu"]) == "2" and group["rayStartParams"]["num-gpus"] == "2"
    assert "enableInTreeAutoscaling" not in cluster["spec"]
    nodes = {}
    for pod in pods:
        nodes[pod["spec"]["nodeName"]] = nodes.get(pod["spec"]["nodeName"], 0) + 1
    assert len(nodes) == 64 and set(nodes.values()) == {4}
    # No driver: the Service leads to Ray Serve's proxy on the head pod.
    assert "llm-vllm" not in deployments
    assert service["spec"]["selector"] == {"ray.io/cluster": "llm-raycluster", "ray.io/node-type": "head"}
    assert service["spec"]["ports"][0]["targetPort"] == 8000
    # What serve_app deployed through the API server's proxy: the plan's replicas, engine arguments and placement.
    assert serve.instance == {"http_options": {"host": "0.0.0.0", "port": 8000}, "proxy_location": "HeadOnly"}
    config = serve.applications["llm"]
    assert config["import_path"] == "ray.serve.llm:build_openai_app" and config["route_prefix"] == "/"
    (llm,) = config["args"]["llm_configs"]
    assert llm["model_loading_config"] == {"model_id": SERVED, "model_source": "/models/DeepSeek-R1-Distill-Llama-70B"}
    # The replica count in the application's deployments list, which Serve applies in place.
    (deployment,) = config["deployments"]
    scaling = deployment["autoscaling_config"]
    assert deployment["name"] == f"LLMServer:{SERVED}" and "num_replicas" not in deployment
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (256, 256)
    engine = llm["engine_kwargs"]
    assert (engine["tensor_parallel_size"], engine["pipeline_parallel_size"], engine["max_model_len"]) == (2, 1, 8096)
    assert llm["placement_group_config"] == {"bundles": [{"GPU": 1, "CPU": 1}] * 2, "strategy": "STRICT_PACK"}
    assert llm["accelerator_config"] == {"kind": "gpu"}
    ingress = config["args"]["ingress_cls_config"]
    assert ingress["ingress_cls"] == "llmops_serve_ingress:KeyedOpenAiIngress"
    assert set(ingress["ingress_extra_kwargs"]["api_key_digest"]) == {"salt", "iterations", "digest"}
    assert API_KEY not in json.dumps(config)  # only the key's digest
    # The role's files/serve, uploaded as the application's working_dir.
    package = config["runtime_env"]["working_dir"].removeprefix("gcs://")
    with zipfile.ZipFile(io.BytesIO(serve.packages[package])) as archive:
        source = (REPO / "roles" / "vllm_serve" / "files" / "serve" / "llmops_serve_ingress.py").read_bytes()
        assert archive.read("llmops_serve_ingress.py") == source
    # The gates: every replica running, then a real completion through the Service.
    text = " ".join(output.split())
    assert "Replicas: 256 behind Ray Serve (application llm on the RayCluster llm/llm-raycluster" in text, text[-4000:]
    assert "Parallelism per replica: TP=2 PP=1" in text and "A: " in text


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            ["-e", "ray_vllm_kubeconfig=/nonexistent/kubeconfig"],
            "ray_vllm_kubeconfig=/nonexistent/kubeconfig does not exist",
        ),
        (["-e", "ray_vllm_kube_context=no-such-context"], "ray_vllm_kube_context=no-such-context"),
        (
            ["-e", "ray_vllm_namespace=Bad_Namespace"],
            "ray_vllm_namespace=Bad_Namespace is not a name Kubernetes accepts",
        ),
    ],
)
def test_bad_access_stops_before_any_change(extra, expected, tmp_path):
    with RunningTestBed(tmp_path / "testbed") as bed:
        args = ["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}", *extra]
        rc, output, recap = run_playbook("site.yml", inventory="inventories/prod", extra_args=args, env=bed.env())
        assert rc != 0 and expected in " ".join(output.split()), output[-4000:]
        assert recap["localhost"]["changed"] == 0
        assert bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}")[0] == 404  # nothing was created
