# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""site.yml with the least privilege of docs/rbac/least-privilege.yaml (docs/least-privilege.md), on the test bed
with RBAC on (tests/k8s_testbed/rbac.py).

The cluster admin's part runs with the admin token: the operators are seeded as installed (verify mode; installing
them needs cluster-admin), and playbooks/rbac.yml creates the namespace, the ServiceAccount, the Roles, the
ClusterRole and the bindings. site.yml then runs with a kubeconfig whose token is the ServiceAccount's, and passes;
every request it made was allowed. With one rule taken away it fails at the first task that needs it, and the
failure names the verb and resource: kubernetes.core's own message for the objects it reads and writes, and the
collection's (`_kube_refusal`) for the gates through the API server's service proxy, where a 403 would otherwise
read as a wrong Ray token.

As in test_site_kubernetes.py, pods are records (no runc): the head Service's proxy goes to a real Ray cluster on this
machine and the vLLM Service's to the shared keyed vLLM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_VLLM_KEY
from playbook_runner import run_playbook
from testbed_images import image_check_outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed.harness import RunningTestBed

pytestmark = pytest.mark.integration

NAMESPACE = "llm"
SUBJECT = "system:serviceaccount:llm:ray-vllm-deployer"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
# A head and one GPU worker: the Ray gate's expectations are lowered to it (the plan is gpu-nodes-3's).
SMALL_RAY = ["-e", "ray_cluster_expected_nodes=2", "-e", "ray_cluster_expected_gpus=1"]


def _deployer_kubeconfig(bed, tmp_path):
    """The admin applies the least privilege with playbooks/rbac.yml; a kubeconfig of the ServiceAccount's token."""
    rc, output, _recap = run_playbook(
        "playbooks/rbac.yml",
        inventory="inventories/prod",
        extra_args=["-e", f"ray_vllm_kubeconfig={bed.kubeconfig}"],
        env=bed.env(),
        log_path=tmp_path / "rbac.log",
    )
    assert rc == 0, output[-6000:]
    token = bed.mint_token(service_account=f"{NAMESPACE}/ray-vllm-deployer")
    return bed.kubeconfig_for(token, tmp_path / "deployer.kubeconfig")


def _site(bed, kubeconfig, tmp_path, name, *extra):
    args = ["-e", f"ray_vllm_kubeconfig={kubeconfig}", "-e", f"vllm_serve_api_key={SHARED_VLLM_KEY}", *extra]
    return run_playbook(
        "site.yml",
        inventory="inventories/prod",
        extra_args=args,
        env=_deployer_env(bed, kubeconfig),
        log_path=tmp_path / f"{name}.log",
    )


def _deployer_env(bed, kubeconfig):
    """The test bed's client environment with no way to the admin token: every request is the deployer's."""
    return dict(bed.env(), KUBECONFIG=kubeconfig, K8S_AUTH_KUBECONFIG=kubeconfig)


def _without_rule(bed, path, match):
    """Remove the rules for which ``match(rule)`` holds from the Role or ClusterRole at ``path`` (admin token)."""
    status, role = bed.request("GET", path)
    assert status == 200, role
    kept = [rule for rule in role["rules"] if not match(rule)]
    assert len(kept) < len(role["rules"]), role["rules"]
    status, body = bed.request("PATCH", path, {"rules": kept}, content_type="application/merge-patch+json")
    assert status == 200, body


def test_site_with_least_privilege(tmp_path, ray_cluster_factory, keyed_vllm):
    ray = ray_cluster_factory(head=dict(num_cpus=1), workers=[dict(num_cpus=1, num_gpus=1)])
    started = time.monotonic()
    with RunningTestBed(tmp_path / "testbed", seed="gpu-nodes-3", rbac=True) as bed:
        bed.admin("POST", "outcomes", image_check_outcome())
        bed.admin(
            "PUT",
            "service-backends",
            {
                f"{NAMESPACE}/llm-raycluster-head-svc:8265": ray.dashboard_url,
                f"{NAMESPACE}/llm-vllm:8000": keyed_vllm.base_url,
            },
        )
        kubeconfig = _deployer_kubeconfig(bed, tmp_path)
        rc, output, recap = _site(bed, kubeconfig, tmp_path, "site", *SMALL_RAY)
        audit = bed.admin("GET", "rbac")["audit"]
        refused = [entry for entry in audit if not entry["allowed"]]
        assert rc == 0 and not refused, output[-12000:] + "\n--- refused ---\n" + json.dumps(refused, indent=1)
        assert recap["localhost"]["failed"] == 0 and SHARED_VLLM_KEY not in output
        assert {entry["user"] for entry in audit} == {SUBJECT}
        assert bed.request("GET", f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters/llm-raycluster")[0] == 200
        site_seconds = time.monotonic() - started

        # An early rule gone (the preflight's StorageClass list): kubernetes.core's failure names it.
        cluster_role = f"{RBAC}/clusterroles/ray-vllm-deployer"
        _without_rule(bed, cluster_role, lambda rule: "storageclasses" in rule.get("resources", []))
        rc, output, _recap = _site(bed, kubeconfig, tmp_path, "no-storageclasses", *SMALL_RAY)
        text = " ".join(output.split())
        assert rc != 0, output[-6000:]
        assert (
            f'User \\"{SUBJECT}\\" cannot list resource \\"storageclasses\\" in API group \\"storage.k8s.io\\"' in text
            or f'User "{SUBJECT}" cannot list resource "storageclasses" in API group "storage.k8s.io"' in text
        ), text[-6000:]

        # The service proxy's get gone: the Ray gate's module says it is a permission problem, not a Ray token.
        role = f"{RBAC}/namespaces/{NAMESPACE}/roles/ray-vllm-deployer"
        _without_rule(bed, role, lambda rule: "services/proxy" in rule.get("resources", []))
        rc, output, _recap = run_playbook(
            "tests/integration/playbooks/ray_status_service.yml",
            inventory="localhost,",
            extra_args=["-c", "local", "-e", f"ray_vllm_kubeconfig={kubeconfig}", "-e", f"python={sys.executable}"],
            env=_deployer_env(bed, kubeconfig),
            log_path=tmp_path / "no-proxy.log",
        )
        text = " ".join(output.split())
        assert rc != 0, output[-6000:]
        assert "403 Forbidden, a permission problem of the kubeconfig's user" in text, text[-6000:]
        assert 'cannot get resource "services/proxy" in API group "" in the namespace "llm"' in text.replace(
            '\\"', '"'
        ), text[-6000:]
        assert "Ray token" not in text
    print(f"site.yml with least privilege: {site_seconds:.0f} s; all: {time.monotonic() - started:.0f} s")
