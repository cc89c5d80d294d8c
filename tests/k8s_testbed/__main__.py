# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Command line: run a test bed in the foreground, or start/stop one in the background.

PYTHONPATH=tests python -m k8s_testbed start --state-dir .build/testbed   # prints the kubeconfig path
PYTHONPATH=tests python -m k8s_testbed stop --state-dir .build/testbed
PYTHONPATH=tests python -m k8s_testbed run --state-dir DIR [--seed gpu-nodes-3] [--controllers nodes,kubelet]
    [--runtime runc]   # pods whose images are in the local image store run as runc containers (root, runc)
    [--rbac]           # RBAC authorizes the tokens minted with the admin API (POST /testbed/v1/tokens)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from . import launcher

STOP_SECONDS = 60


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    enabled = None if args.controllers is None else [c for c in args.controllers.split(",") if c]
    bed = launcher.prepare(args.state_dir, args.seed, enabled, args.runtime, args.rbac)
    asyncio.run(launcher.serve(bed, args.state_dir, args.port))
    return 0


def _start(args) -> int:
    os.makedirs(args.state_dir, exist_ok=True)
    kubeconfig = os.path.join(args.state_dir, "kubeconfig")
    if os.path.exists(kubeconfig):
        os.unlink(kubeconfig)
    command = [
        sys.executable,
        "-m",
        "k8s_testbed",
        "run",
        "--state-dir",
        args.state_dir,
        "--seed",
        args.seed,
        "--port",
        str(args.port),
        "--runtime",
        args.runtime,
    ]
    if args.controllers is not None:
        command += ["--controllers", args.controllers]
    if args.rbac:
        command.append("--rbac")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(args.state_dir, "server.log"), "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(kubeconfig):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.stderr.write(f"test bed did not start; see {args.state_dir}/server.log\n")
            return 1
        time.sleep(0.1)
    with open(os.path.join(args.state_dir, "server.pid"), "w") as handle:
        handle.write(str(process.pid))
    sys.stdout.write(kubeconfig + "\n")
    return 0


def _stop(args) -> int:
    """SIGTERM, then wait until the server has gone (it stops its containers first), SIGKILL after a minute."""
    pid_file = os.path.join(args.state_dir, "server.pid")
    if not os.path.exists(pid_file):
        return 0
    with open(pid_file) as handle:
        pid = int(handle.read().strip())
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.unlink(pid_file)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k8s_testbed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("run", "start", "stop"):
        action = sub.add_parser(name)
        action.add_argument("--state-dir", required=True, help="certificates, kubeconfig, logs, exec sandboxes")
        if name != "stop":
            action.add_argument("--seed", default="gpu-nodes-2", help="seed name (seeds/<name>.yaml) or a path")
            action.add_argument("--port", type=int, default=0, help="0 picks a free port")
            action.add_argument("--controllers", default=None, help="comma-separated; default: all")
            action.add_argument(
                "--runtime",
                choices=("none", "runc"),
                default="none",
                help="runc: pods whose images are in the local image store run as containers (root, runc)",
            )
            action.add_argument(
                "--rbac", action="store_true", help="RBAC authorizes minted tokens (admin API: tokens, rbac)"
            )
    args = parser.parse_args(argv)
    args.state_dir = os.path.abspath(args.state_dir)
    return {"run": _run, "start": _start, "stop": _stop}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
