# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kubectl against the test bed, where kubectl is installed (with --validate=false: there is no OpenAPI)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine"),
]

POD = """
apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default, labels: {app: shell}}
spec:
  containers: [{name: main, image: "busybox:1.36", env: [{name: GREETING, value: hello}]}]
"""


def kubectl(bed, *args, stdin=None, check=True):
    completed = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, env=bed.env(), timeout=60, check=False
    )
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


def test_kubectl_reads_writes_execs_and_logs(testbed):
    nodes = json.loads(kubectl(testbed, "get", "nodes", "-o", "json").stdout)["items"]
    gpu_nodes = [n for n in nodes if "nvidia.com/gpu" in n["status"].get("allocatable", {})]
    assert len(nodes) == 5 and len(gpu_nodes) == 2
    assert "created" in kubectl(testbed, "create", "--validate=false", "-f", "-", stdin=POD).stdout
    kubectl(testbed, "wait", "--for=condition=Ready", "pod/shell", "--timeout=30s")
    assert kubectl(testbed, "exec", "shell", "--", "sh", "-c", "echo $GREETING").stdout == "hello\n"
    failed = kubectl(testbed, "exec", "shell", "--", "sh", "-c", "exit 4", check=False)
    assert failed.returncode == 4
    assert kubectl(testbed, "logs", "shell").stdout.strip()
    applied = kubectl(
        testbed,
        "apply",
        "--server-side",
        "--validate=false",
        "-f",
        "-",
        stdin=POD.replace("app: shell", "app: shell, tier: web"),
    )
    assert "serverside-applied" in applied.stdout
    labels = json.loads(kubectl(testbed, "get", "pod", "shell", "-o", "json").stdout)["metadata"]["labels"]
    assert labels == {"app": "shell", "tier": "web"}
    assert kubectl(testbed, "get", "pods", "-l", "tier=web", "-o", "name").stdout.strip() == "pod/shell"
    assert "deleted" in kubectl(testbed, "delete", "pod", "shell", "--wait=true").stdout
    missing = kubectl(testbed, "get", "pod", "shell", check=False)
    assert missing.returncode == 1 and 'pods "shell" not found' in missing.stderr
