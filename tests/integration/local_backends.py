# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Start or stop, from the command line, the real servers the Kubernetes test bed's Services stand for.

    python tests/integration/local_backends.py start --state-dir DIR --kubeconfig KUBECONFIG --api-key KEY
    python tests/integration/local_backends.py stop --state-dir DIR

`start` runs a Ray cluster on this machine (a head and two workers offering one GPU each, as the plan lays out the
seed cluster) and a vLLM CPU server with the collection's API-key middleware serving the demo model under the seed's
served name, waits until both answer, and maps them through the test bed's admin API to the Services the roles
create (`llm-raycluster-head-svc:8265`, `llm-vllm:8000`). The molecule/kubernetes scenario uses it; the pytest
suites use the same classes as fixtures. `stop` ends every process group it started and sweeps Ray's temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import sys
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray_local
import vllm_local
from testbed_images import image_check_outcome

REPO = Path(__file__).resolve().parents[2]
SERVED = "deepseek-r1-distill-llama-70b"


def _admin(kubeconfig: str, path: str, body: dict, method: str = "PUT") -> None:
    """A request to the test bed's admin API with the kubeconfig's own server, token and CA."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = config["clusters"][0]["cluster"]["server"]
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=str(Path(kubeconfig).parent / "pki" / "ca.crt"))
    request = urllib.request.Request(server + "/testbed/v1/" + path, data=json.dumps(body).encode(), method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, context=context, timeout=30):
        pass


def start(args) -> int:
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ray = ray_local.LocalRayCluster()
    ray.start_head(num_cpus=1)
    for _worker in range(2):
        ray.add_worker(num_cpus=1, num_gpus=1)
    server = vllm_local.VllmServer(
        vllm_local.ensure_demo_model(),
        str(state_dir),
        served_name=SERVED,
        api_key=args.api_key,
        extra_args=["--middleware", "llmops_api_key_header.ApiKeyHeaderMiddleware"],
        env={"PYTHONPATH": str(REPO / "roles" / "vllm_serve" / "files")},
    )
    server.start()
    state = {
        "groups": [node.pgid for node in ray.nodes] + [server.process.pid],
        "ray_temp_dir": ray.temp_dir,
        "dashboard_url": ray.dashboard_url,
        "vllm_url": server.base_url,
    }
    (state_dir / "backends.json").write_text(json.dumps(state))
    server.wait_ready(timeout=600)
    _admin(
        args.kubeconfig,
        "service-backends",
        {
            f"{args.namespace}/llm-raycluster-head-svc:8265": ray.dashboard_url,
            f"{args.namespace}/llm-vllm:8000": server.base_url,
        },
    )
    # The image gate's Job ends having printed what the project's serving image holds.
    _admin(args.kubeconfig, "outcomes", image_check_outcome(namespace=args.namespace), method="POST")
    sys.stdout.write(json.dumps(state) + "\n")
    return 0


def stop(args) -> int:
    path = Path(args.state_dir) / "backends.json"
    if not path.exists():
        return 0
    state = json.loads(path.read_text())
    for group in state["groups"]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for pid in ray_local.pids_mentioning(state["ray_temp_dir"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state["ray_temp_dir"], ignore_errors=True)
    path.unlink()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    started = sub.add_parser("start")
    started.add_argument("--state-dir", required=True)
    started.add_argument("--kubeconfig", required=True)
    started.add_argument("--api-key", required=True)
    started.add_argument("--namespace", default="llm")
    stopped = sub.add_parser("stop")
    stopped.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    return start(args) if args.action == "start" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
