# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Start a test bed's server: certificates, token, kubeconfig written only once the port listens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal

import yaml
from aiohttp import web

from . import controllers, server, tls


def prepare(
    state_dir: str, seed_name: str, enabled_controllers=None, runtime: str = "none", rbac: bool = False
) -> server.TestBed:
    """A test bed for ``state_dir``; ``runtime`` "runc" runs pods whose images are stored locally as containers;
    ``rbac``: RBAC decides what minted tokens may do (rbac.py)."""
    os.makedirs(state_dir, exist_ok=True)
    bed = server.TestBed(
        controllers.load_seed(seed_name),
        secrets.token_urlsafe(24),
        exec_root=os.path.join(state_dir, "exec"),
        enabled_controllers=enabled_controllers,
        client_cert_cn="testbed-admin",
        runtime_dir=state_dir if runtime == "runc" else None,
        rbac_enabled=rbac,
    )
    return bed


async def serve(bed: server.TestBed, state_dir: str, port: int = 0) -> None:
    paths = tls.write_certificates(os.path.join(state_dir, "pki"))
    runner = web.AppRunner(bed.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.server_context(paths), shutdown_timeout=1)
    await site.start()
    bound_port = runner.addresses[0][1]
    config = server.kubeconfig(
        f"https://127.0.0.1:{bound_port}", bed.token, paths["ca.crt"], paths["client.crt"], paths["client.key"]
    )
    target = os.path.join(state_dir, "kubeconfig")
    with open(target + ".tmp", "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.chmod(target + ".tmp", 0o600)
    os.replace(target + ".tmp", target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bed.reconcile_all()
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        await runner.cleanup()
