# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""LocalHub: the local hub started for a test, in a thread of the test's process or as its own process, and stopped.

    with LocalHub({"HuggingFaceTB/SmolLM2-135M-Instruct": model_dir}) as hub:
        snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct", revision=hub.commits[...], endpoint=hub.url, ...)

A thread serves clients of any process (the SDK in the test, ansible-playbook, a Job's script run as a subprocess)
and records every request (``requests``); a process (``mode="process"``: ``python -m model_hub serve``) is what a
test bed's pods reach, bound to an address they can route to (``host="0.0.0.0"``).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

from .repository import Repository
from .server import HubServer

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LocalHub:
    """Serves ``repos`` ({"ORG/NAME": directory}) until stopped; ``url``, ``commits`` ({repo_id: sha}) once started.

    Thread mode only: ``interruptions`` ({"ORG/NAME/path": bytes}) cuts the first whole-file GET of those files;
    ``corruptions`` ({"ORG/NAME/path"}) serves those files with one byte changed; ``throttle`` (bytes per second, also
    settable while serving) slows every file body down.
    """

    def __init__(
        self,
        repos,
        host="127.0.0.1",
        port=0,
        mode="thread",
        interruptions=None,
        start_timeout=120,
        corruptions=(),
        throttle=None,
    ):
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be thread or process, not {mode!r}")
        if (interruptions or corruptions or throttle) and mode != "thread":
            raise ValueError("interruptions, corruptions and throttle need mode='thread' (set on the server held)")
        self.repos, self.host, self.port, self.mode = dict(repos), host, port, mode
        self.interruptions, self.start_timeout = dict(interruptions or {}), start_timeout
        self.corruptions, self._throttle = set(corruptions), throttle
        self.url, self.commits = None, {}
        self._server = self._thread = self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def requests(self):
        """Every request so far: ``{method, path, range, status, file, api}`` (thread mode); ``file`` is
        "ORG/NAME/path" for a file answered (either API), ``api`` is ``huggingface`` or ``modelscope``."""
        if self._server is None:
            raise RuntimeError("requests are recorded in thread mode only, once started")
        return self._server.requests  # a copy, once the handlers still answering have recorded their requests

    @property
    def throttle(self):
        return self._throttle

    @throttle.setter
    def throttle(self, bytes_per_second):
        """Pace file bodies to ``bytes_per_second`` from now on (None: full speed)."""
        self._throttle = bytes_per_second
        if self._server is not None:
            self._server.throttle = bytes_per_second

    def interrupt(self, key, after_bytes):
        """Cut the next whole-file GET of ``key`` ("ORG/NAME/path") after ``after_bytes``."""
        with self._server.lock:
            self._server.interruptions[key] = after_bytes

    def start(self):
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None

    def _start_thread(self):
        repositories = {repo_id: Repository(repo_id, directory) for repo_id, directory in self.repos.items()}
        self._server = HubServer(
            (self.host, self.port),
            repositories,
            self.interruptions,
            corruptions=self.corruptions,
            throttle=self._throttle,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="model-hub", daemon=True)
        self._thread.start()
        self.url = self._server.url
        self.commits = {repo_id: repository.sha for repo_id, repository in repositories.items()}

    def _start_process(self):
        command = [sys.executable, "-m", "model_hub", "serve", "--host", self.host, "--port", str(self.port)]
        for repo_id, directory in self.repos.items():
            command += ["--repo", f"{repo_id}={directory}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self._lines = queue.Queue()
        threading.Thread(target=self._forward_lines, name="model-hub-stdout", daemon=True).start()
        self.url = self._read_line()
        while len(self.commits) < len(self.repos):
            repo_id, sha = self._read_line().split()[:2]
            self.commits[repo_id] = sha

    def _forward_lines(self):
        """Hands each line the serving process prints to _read_line; None once it closed its output."""
        for line in self._process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _read_line(self):
        """The next line the serving process prints, waiting at most start_timeout (hashing big files takes time)."""
        try:
            line = self._lines.get(timeout=self.start_timeout)
        except queue.Empty:
            line = ""
        if not line:
            code = self._process.poll()
            self.stop()
            raise RuntimeError(
                f"the model hub exited with {code} before it served"
                if code is not None
                else f"the model hub printed nothing within {self.start_timeout} s"
            )
        return line
