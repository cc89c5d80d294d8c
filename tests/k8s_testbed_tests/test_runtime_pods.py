# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pods that run for real: the test bed's kubelet with the runc runtime, from a locally built image.

One test bed with the runtime serves the module; each test works in its own namespace. The image is the model
download Job's (Debian, Python, bash), built once per machine by tests/k8s_testbed/images.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed
from k8s_testbed.images.build import ensure_images
from k8s_testbed.runtime import unavailable_reason

IMAGE = "localhost/llmops/model-download:0.1.0"
SERVE = "import http.server as h; h.ThreadingHTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    reason = unavailable_reason()
    assert not reason, f"the runtime cannot run here: {reason}"
    ensure_images([IMAGE])
    with RunningTestBed(tmp_path_factory.mktemp("runtime"), runtime="runc") as running:
        yield running


@pytest.fixture
def namespace(bed, request):
    name = "rt-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    status, body = bed.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


def create(bed, namespace, body):
    kind = body["kind"]
    plural = {"Endpoints": "endpoints"}.get(kind, kind.lower() + "s")
    group = "api/v1" if "/" not in body["apiVersion"] else "apis/" + body["apiVersion"]
    status, answer = bed.request("POST", f"/{group}/namespaces/{namespace}/{plural}", body)
    assert status == 201, answer
    return answer


def pod(name, *, command, labels=None, **extra):
    container = {"name": "main", "image": IMAGE, "command": command}
    container.update(extra.pop("container", {}))
    spec = {"containers": [container], "terminationGracePeriodSeconds": extra.pop("grace", 5)}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def get_pod(bed, namespace, name):
    status, body = bed.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    return body if status == 200 else None


def wait_for(what, check, timeout=60.0, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def ready(bed, namespace, name):
    def check():
        found = get_pod(bed, namespace, name)
        conditions = {c["type"]: c["status"] for c in (found or {}).get("status", {}).get("conditions", [])}
        return found if conditions.get("Ready") == "True" else None

    return wait_for(f"pod {name} ready", check)


def container_state(bed, namespace, name):
    found = get_pod(bed, namespace, name) or {}
    statuses = found.get("status", {}).get("containerStatuses") or [{}]
    return statuses[0]


def restarted(entry):
    """A container status once the container has restarted, else None (for wait_for)."""
    return entry if entry.get("restartCount", 0) >= 1 else None


def succeeded(result):
    """An exec's (code, stdout, stderr) when the code is 0, else None (for wait_for)."""
    return result if result[0] == 0 else None


def pod_exec(bed, namespace, name, *command):
    """(exit code, stdout, stderr) of a command run in the pod's real container through the API server's exec."""
    from kubernetes import client
    from kubernetes.stream import stream

    with bed.api_client() as api_client:
        api = client.CoreV1Api(api_client)
        response = stream(
            api.connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=list(command),
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        response.run_forever(timeout=60)
        return response.returncode, response.read_stdout() or "", response.read_stderr() or ""


def logs(bed, namespace, name, **query):
    path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return bed.request("GET", path)


def test_a_pod_runs_with_its_environment_volumes_and_probes(bed, namespace):
    create(
        bed,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "conf"},
            "data": {"a.txt": "alpha", "b.txt": "beta"},
        },
    )
    secret = {"token": base64.b64encode(b"s3cret").decode()}
    create(bed, namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "data": secret})
    spec = pod(
        "web",
        command=["python3", "-c"],
        container={
            "args": [SERVE],
            "workingDir": "/srv",
            "env": [
                # $(VAR) expands only from variables defined before it, as the kubelet does.
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "hello $(POD_NAME)"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            "resources": {"limits": {"memory": "256Mi"}},
            "volumeMounts": [
                {"name": "conf", "mountPath": "/etc/conf"},
                {"name": "creds", "mountPath": "/etc/creds"},
                {"name": "shm", "mountPath": "/dev/shm"},
                {"name": "scratch", "mountPath": "/srv"},
            ],
        },
        volumes=[
            {
                "name": "conf",
                "configMap": {"name": "conf", "items": [{"key": "a.txt", "path": "sub/a", "mode": 0o600}]},
            },
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    create(bed, namespace, spec)
    found = ready(bed, namespace, "web")
    status = found["status"]
    assert status["phase"] == "Running"
    assert status["podIP"].startswith("10.244.")
    entry = status["containerStatuses"][0]
    assert entry["containerID"].startswith("containerd://") and entry["imageID"].startswith(
        "localhost/llmops/model-download@sha256:"
    )
    code, out, err = pod_exec(
        bed,
        namespace,
        "web",
        "sh",
        "-c",
        'echo "$GREETING|$POD_IP|$TOKEN|$(pwd)|$(hostname)"; cat /etc/conf/sub/a; echo; stat -c %a /etc/conf/sub/a;'
        " stat -c %a /etc/creds/token; ls /etc/conf; df -k /dev/shm | tail -1; touch /etc/conf/x || echo read-only",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"hello web|{status['podIP']}|s3cret|/srv|web"
    assert lines[1:5] == ["alpha", "600", "400", "sub"]
    assert lines[5].split()[1] == str(32 * 1024)
    assert lines[-1] == "read-only"
    # The readiness probe really ran against the server: the server logged the kubelet's requests on stderr.
    wait_for("probe requests in the log", lambda: '"GET / HTTP/1.1" 200' in logs(bed, namespace, "web")[1])


def test_services_resolve_and_forward_to_ready_endpoints(bed, namespace):
    create(
        bed,
        namespace,
        pod(
            "backend",
            command=["python3", "-c", SERVE],
            labels={"app": "backend"},
            container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
        ),
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend"},
        "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    create(bed, namespace, service)
    create(bed, namespace, pod("client", command=["sleep", "3600"], grace=0))
    ready(bed, namespace, "backend")
    ready(bed, namespace, "client")
    fetch = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).status)"
    for name in ("backend", f"backend.{namespace}", f"backend.{namespace}.svc.cluster.local"):
        code, out, err = wait_for(
            f"{name} answering from another pod",
            lambda n=name: succeeded(pod_exec(bed, namespace, "client", "python3", "-c", fetch, f"http://{n}/")),
            timeout=30,
        )
        assert out.strip() == "200"
    status, body = bed.request("GET", f"/api/v1/namespaces/{namespace}/services/backend:80/proxy/")
    assert status == 200, body


def test_a_crashing_container_backs_off_and_keeps_its_last_state(bed, namespace):
    create(bed, namespace, pod("crash", command=["sh", "-c", "echo starting; echo broken >&2; exit 3"]))

    def backing_off():
        entry = container_state(bed, namespace, "crash")
        waiting = (entry.get("state") or {}).get("waiting") or {}
        return entry if waiting.get("reason") == "CrashLoopBackOff" and entry.get("restartCount", 0) >= 2 else None

    entry = wait_for("CrashLoopBackOff", backing_off, timeout=60)
    terminated = entry["lastState"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error" and terminated["finishedAt"]
    assert "back-off 10s restarting failed container=main" in entry["state"]["waiting"]["message"]
    status, text = logs(bed, namespace, "crash", previous="true")
    assert status == 200 and "starting" in text and "broken" in text


def test_a_container_over_its_memory_limit_is_oom_killed(bed, namespace):
    hog = "x = bytearray(200 * 1024 * 1024); print(len(x))"
    create(
        bed,
        namespace,
        pod(
            "hog",
            command=["python3", "-c", hog],
            restartPolicy="Never",
            container={"resources": {"limits": {"memory": "64Mi"}}},
        ),
    )

    def ended():
        terminated = (container_state(bed, namespace, "hog").get("state") or {}).get("terminated")
        return terminated

    terminated = wait_for("the container to end", ended)
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137
    assert get_pod(bed, namespace, "hog")["status"]["phase"] == "Failed"


def test_jobs_complete_or_fail_by_exit_code(bed, namespace):
    def job(name, command, backoff):
        template = {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE, "command": command}]}
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": backoff, "template": template},
        }

    create(bed, namespace, job("works", ["sh", "-c", "echo done"], 0))
    create(bed, namespace, job("fails", ["sh", "-c", "echo nope; exit 2"], 1))

    def condition(name, kind):
        status, body = bed.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        return any(c["type"] == kind and c["status"] == "True" for c in body.get("status", {}).get("conditions", []))

    wait_for("Job works complete", lambda: condition("works", "Complete"))
    wait_for("Job fails failed", lambda: condition("fails", "Failed"), timeout=90)
    status, body = bed.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/fails")
    assert body["status"]["failed"] == 2


def test_deletion_is_graceful(bed, namespace):
    trap = "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.2; done"
    create(bed, namespace, pod("polite", command=["bash", "-c", trap], grace=20))
    create(
        bed, namespace, pod("stubborn", command=["bash", "-c", "trap '' TERM; while true; do sleep 0.2; done"], grace=2)
    )
    for name in ("polite", "stubborn"):
        ready(bed, namespace, name)
    started = time.monotonic()
    for name in ("polite", "stubborn"):
        status, body = bed.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
        assert status == 200 and body["metadata"]["deletionTimestamp"], body
    wait_for("polite gone", lambda: get_pod(bed, namespace, "polite") is None)
    polite_seconds = time.monotonic() - started
    wait_for("stubborn gone", lambda: get_pod(bed, namespace, "stubborn") is None)
    stubborn_seconds = time.monotonic() - started
    assert polite_seconds < 5, "SIGTERM ended it well before its grace period"
    assert stubborn_seconds >= 2, "SIGKILL came only after the grace period"
    log_dir = Path(bed.state_dir, "logs")
    polite_log = next(log_dir.glob(f"{namespace}_polite_*/main/0.log")).read_text()
    assert "got TERM" in polite_log


def test_probes_restart_an_unhealthy_container(bed, namespace):
    liveness = {"exec": {"command": ["test", "-f", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
    startup = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    create(
        bed,
        namespace,
        pod(
            "sick",
            command=["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"],
            grace=1,
            container={"livenessProbe": liveness, "startupProbe": startup},
        ),
    )
    entry = wait_for(
        "a restart after failed liveness probes",
        lambda: restarted(container_state(bed, namespace, "sick")),
        timeout=60,
    )
    assert entry["lastState"]["terminated"]["exitCode"] in (137, 143)
    status, events = bed.request("GET", f"/api/v1/namespaces/{namespace}/events")
    reasons = {(e["reason"], e["message"].split(":")[0]) for e in events["items"]}
    assert ("Unhealthy", "Liveness probe failed") in reasons


def test_init_containers_run_first(bed, namespace):
    spec = pod(
        "ordered",
        command=["sh", "-c", "cat /work/order; sleep 3600"],
        grace=0,
        container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    )
    spec["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    spec["spec"]["initContainers"] = [
        {
            "name": f"init{n}",
            "image": IMAGE,
            "command": ["sh", "-c", f"echo init{n} >> /work/order"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }
        for n in (1, 2)
    ]
    create(bed, namespace, spec)
    ready(bed, namespace, "ordered")
    wait_for("the main container's log", lambda: logs(bed, namespace, "ordered")[1].split() == ["init1", "init2"])
    inits = get_pod(bed, namespace, "ordered")["status"]["initContainerStatuses"]
    assert [i["state"]["terminated"]["reason"] for i in inits] == ["Completed", "Completed"]


def test_admin_faults_are_real(bed, namespace):
    create(bed, namespace, pod("victim", command=["sleep", "3600"], grace=0))
    ready(bed, namespace, "victim")
    bed.admin("POST", f"pods/{namespace}/victim/crashloop", {})
    entry = wait_for(
        "the killed container restarting",
        lambda: restarted(container_state(bed, namespace, "victim")),
    )
    assert entry["lastState"]["terminated"]["exitCode"] == 137
    bed.admin("DELETE", f"pods/{namespace}/victim/crashloop")
    ready(bed, namespace, "victim")
