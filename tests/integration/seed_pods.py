# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The seed deployment with pods that run: `site.yml -i inventories/prod` on the test bed's seed cluster whose
kubelet runs containers (tests/k8s_testbed/runtime), from the locally built CPU serving image and download image.

    python tests/integration/seed_pods.py up --state-dir DIR      # test bed + hub + site.yml, in the foreground
    python tests/integration/seed_pods.py start --state-dir DIR   # the test bed and the hub in the background
    python tests/integration/seed_pods.py stop --state-dir DIR    # stops them (molecule/kubernetes' destroy)

`SeedPods` is the same for pytest (one deployment a module shares), molecule/kubernetes and make bench. The model
is the demo model (SmolLM2-135M-Instruct, converted to safetensors), served by the local Hugging Face hub
(tests/model_hub) on the pod bridge's gateway, so the download Job runs the collection's real download code in its
container with no internet. The plan is a CPU plan (ray_vllm_device=cpu) on the seed's two GPU nodes: KubeRay's
head and workers run Ray 2.60 and the vLLM driver serves with the uni executor.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS_DIR))

import vllm_local  # noqa: E402
from k8s_testbed.harness import RunningTestBed  # noqa: E402
from k8s_testbed.images.build import ensure_images  # noqa: E402
from k8s_testbed.runtime import RUNTIME_ROOT  # noqa: E402
from k8s_testbed.runtime.network import GATEWAY as GATEWAY_IP  # noqa: E402
from model_hub import LocalHub  # noqa: E402
from playbook_runner import run_playbook  # noqa: E402

NAMESPACE = "llm"
RELEASE = "llm"
SERVING_IMAGE = "localhost/llmops/ray-vllm:0.32.0-ray2.60.0-cpu"
SERVING_IMAGE_WITHOUT_RAY = "localhost/llmops/ray-vllm:0.32.0-no-ray-cpu"
DOWNLOAD_IMAGE = "localhost/llmops/model-download:0.1.0"
IMAGES = (SERVING_IMAGE, SERVING_IMAGE_WITHOUT_RAY, DOWNLOAD_IMAGE)
MODEL_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL_PATH = "/models/SmolLM2-135M-Instruct"
SERVED = "smollm2-135m-instruct"
API_KEY = "seed-pods-test-key-4f1a"
VARS_FILE = Path(__file__).resolve().parent / "vars" / "seed_pods.yml"


def deployment_vars() -> dict:
    """The variables that turn inventories/prod's seed into the demo model on CPU (vars/seed_pods.yml)."""
    return yaml.safe_load(VARS_FILE.read_text())


def hub_port() -> int:
    return int(deployment_vars()["model_storage_endpoint"].rsplit(":", 1)[1])


def runc_containers() -> list:
    """The ids of the containers the test bed's runtime has in runc's state (none once everything stopped)."""
    command = ["runc", "--root", os.path.join(RUNTIME_ROOT, "runc"), "list", "-q"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def wait_until(what, check, timeout=60.0, interval=1.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def check_gateway() -> None:
    """The hub endpoint in vars/seed_pods.yml is the pod bridge's gateway, where pods reach this machine."""
    host = deployment_vars()["model_storage_endpoint"].split("//", 1)[1].rsplit(":", 1)[0]
    if host != GATEWAY_IP:
        raise SystemExit(
            f"{VARS_FILE}: model_storage_endpoint must use the pod bridge's gateway {GATEWAY_IP}, not {host}"
        )


class SeedPods:
    """A test bed running containers and the local hub, for site.yml's deployment, until stopped (in this process)."""

    def __init__(self, state_dir, seed="gpu-nodes-2"):
        self.state_dir = Path(state_dir)
        self.seed = seed
        self.bed = None
        self.hub = None
        self.runs = {}

    def start(self) -> SeedPods:
        check_gateway()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_images(list(IMAGES))
        model = vllm_local.ensure_demo_model()
        self.bed = RunningTestBed(self.state_dir / "testbed", seed=self.seed, runtime="runc").start()
        # On every address, so pods reach it at the bridge's gateway.
        self.hub = LocalHub({MODEL_REPO: model}, host="0.0.0.0", port=hub_port(), mode="process").start()
        return self

    def site(self, name, *extra, playbook="site.yml"):
        """(rc, output, recap) of a playbook on the deployment, its output kept as <state_dir>/<name>.log."""
        args = ["-e", f"ray_vllm_kubeconfig={self.bed.kubeconfig}", "-e", f"@{VARS_FILE}"]
        args += ["-e", f"vllm_serve_api_key={API_KEY}", *extra]
        started = time.monotonic()
        result = run_playbook(
            playbook,
            inventory="inventories/prod",
            extra_args=args,
            env=self.bed.env(),
            log_path=self.state_dir / f"{name}.log",
            timeout=2400,
        )
        self.runs[name] = time.monotonic() - started
        return result

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None
        if self.bed is not None:
            self.bed.stop()
            self.bed = None

    def __enter__(self) -> SeedPods:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- the same, detached, for molecule/kubernetes ---------------------------------------------------------------


def start_detached(state_dir: Path) -> int:
    """The test bed (python -m k8s_testbed start --runtime runc) and the hub as background processes."""
    check_gateway()
    state_dir.mkdir(parents=True, exist_ok=True)
    ensure_images(list(IMAGES))
    model = vllm_local.ensure_demo_model()
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    testbed = [sys.executable, "-m", "k8s_testbed", "start", "--state-dir", str(state_dir / "testbed")]
    subprocess.run([*testbed, "--runtime", "runc"], env=env, check=True, stdout=subprocess.DEVNULL)
    hub_log = open(state_dir / "hub.log", "ab")
    hub = subprocess.Popen(
        [sys.executable, "-m", "model_hub", "serve", "--repo", f"{MODEL_REPO}={model}", "--host", "0.0.0.0"]
        + ["--port", str(hub_port())],
        env=env,
        stdout=hub_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (state_dir / "hub.pid").write_text(str(hub.pid))
    _wait_for_port(hub_port(), hub)
    return 0


def _wait_for_port(port: int, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the hub exited with {process.returncode}; see its log")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the hub did not listen on port {port} within {timeout:.0f} s")


def stop_detached(state_dir: Path) -> int:
    pid_file = state_dir / "hub.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
    command = [sys.executable, "-m", "k8s_testbed", "stop", "--state-dir", str(state_dir / "testbed")]
    return subprocess.run(command, env=env, check=False).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "start", "stop"])
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.action == "start":
        return start_detached(args.state_dir)
    if args.action == "stop":
        return stop_detached(args.state_dir)
    with SeedPods(args.state_dir) as pods:
        rc, output, _recap = pods.site("site")
        print(output[-6000:])
        print(f"site.yml: rc={rc} in {pods.runs['site']:.0f} s; kubeconfig {pods.bed.kubeconfig}")
        if rc == 0 and os.environ.get("SEED_PODS_HOLD"):
            input("deployment up; press enter to stop it ")
        return rc


if __name__ == "__main__":
    sys.exit(main())
