# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A stand-in for the Ray dashboard's Serve REST API, for Serve applications no machine here can run.

The Kubernetes tests deploy GPU plans with hundreds of replicas; the Serve REST API that serve_app and serve_status
talk to is answered here the way Ray 2.60's dashboard answers it (the shape of the recorded answer
tests/fixtures/serve/applications-running-2-replicas.json), as if Serve ran every replica of what was deployed:

- ``GET /api/serve/applications/``: the instance (controller, proxies, HTTP options) and, per application, the
  config as it was PUT, None keys left out as Serve echoes it (``deployed_app_config``), status RUNNING, its LLM
  deployment ``LLMServer:<model_id>`` with ``num_replicas`` (or the autoscaling minimum) RUNNING replicas, from the
  application's ``deployments`` list over the LLM config's ``deployment_config``, and the ingress deployment with
  one;
- ``PUT /api/serve/applications/``: the whole instance's config (applications left out are deleted); the HTTP
  options and proxy location are taken when Serve starts, as Serve does;
- ``DELETE /api/serve/applications/``: Serve shut down;
- ``GET``/``PUT /api/packages/gcs/<name>.zip``: runtime_env packages (404 until uploaded).

Anything else (the Ray gate's ``/api/cluster_status``, ``/api/v0/nodes`` ...) is forwarded to a real dashboard.
What was deployed and uploaded stays readable (``applications``, ``packages``, ``instance``) for the test's asserts.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "serve" / "applications-running-2-replicas.json"
SERVE_PATH = "/api/serve/applications/"
PACKAGE_PATH = "/api/packages/gcs/"


class ServeDouble:
    """The Serve REST API of one Ray dashboard, served on 127.0.0.1; other paths go to ``forward_url``."""

    def __init__(self, forward_url=None):
        self.forward_url = (forward_url or "").rstrip("/")
        self.recorded = json.loads(RECORDED.read_text())
        self.lock = threading.Lock()
        self.applications = {}  # name -> the config it was deployed with
        self.packages = {}  # "_ray_pkg_<hash>.zip" -> bytes
        self.instance = None  # {"http_options", "proxy_location"} while Serve runs
        self.calls = []  # (method, path) of every Serve and package request
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # --- the answers

    def details(self):
        recorded = self.recorded
        with self.lock:
            if self.instance is None:
                # Serve not running: the dashboard answers no controller, no HTTP options, no applications.
                return {
                    "controller_info": {},
                    "proxy_location": None,
                    "http_options": None,
                    "grpc_options": None,
                    "proxies": {},
                    "applications": {},
                }
            http_options = dict(recorded["http_options"], **self.instance["http_options"])
            return {
                "controller_info": recorded["controller_info"],
                "proxy_location": self.instance["proxy_location"],
                "http_options": http_options,
                "grpc_options": recorded["grpc_options"],
                "proxies": recorded["proxies"],
                "applications": {name: self._application(config) for name, config in self.applications.items()},
            }

    def _application(self, config):
        template = self.recorded["applications"]["llm"]
        llm_template = template["deployments"]["LLMServer:smollm2-135m-instruct"]
        deployments = {}
        args = config.get("args") or {}
        # The application's deployments list overrides what the builder's config sets (None: left as it is).
        overrides = {entry["name"]: entry for entry in config.get("deployments") or []}
        for llm_config in args.get("llm_configs") or []:
            name = "LLMServer:" + llm_config["model_loading_config"]["model_id"]
            options = dict(llm_config.get("deployment_config") or {})
            options.update({key: value for key, value in overrides.get(name, {}).items() if value is not None})
            scaling = options.get("autoscaling_config")
            count = int(scaling["min_replicas"]) if scaling else int(options.get("num_replicas", 1))
            deployments[name] = self._deployment(llm_template, name, count)
        ingress = ((args.get("ingress_cls_config") or {}).get("ingress_cls") or "x:OpenAiIngress").rsplit(":", 1)[-1]
        deployments[ingress] = self._deployment(template["deployments"]["KeyedOpenAiIngress"], ingress, 1)
        application = {key: template[key] for key in ("docs_path", "message", "last_deployed_time_s", "source")}
        application.update(
            name=config["name"],
            route_prefix=config.get("route_prefix", "/"),
            status="RUNNING",
            deployed_app_config=_without_none(config),
            deployments=deployments,
        )
        return application

    @staticmethod
    def _deployment(template, name, count):
        replica = template["replicas"][0]
        replicas = [
            dict(replica, replica_id="r%07d" % index, actor_name="SERVE_REPLICA::%s#%07d" % (name, index))
            for index in range(count)
        ]
        return dict(template, name=name, target_num_replicas=count, replicas=replicas)

    def deploy(self, config):
        with self.lock:
            if self.instance is None:
                self.instance = {
                    "http_options": dict(config.get("http_options") or {}),
                    "proxy_location": config.get("proxy_location") or "EveryNode",
                }
            self.applications = {app["name"]: app for app in config.get("applications") or []}

    def shutdown(self):
        with self.lock:
            self.instance = None
            self.applications = {}


def _without_none(value):
    """``value`` with the None entries of its dicts left out, as Serve echoes a deployed config."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return copy.deepcopy(value)


def _handler(double):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _answer(self, status, body=b"", content_type="application/json"):
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self):
            path = self.path.split("?", 1)[0]
            body = self._body()
            if path == SERVE_PATH or path.startswith(PACKAGE_PATH):
                double.calls.append((self.command, path))
            if path == SERVE_PATH:
                if self.command == "GET":
                    return self._answer(200, double.details())
                if self.command == "PUT":
                    double.deploy(json.loads(body))
                    return self._answer(200, b"", "text/plain")
                if self.command == "DELETE":
                    double.shutdown()
                    return self._answer(200, b"", "text/plain")
            if path.startswith(PACKAGE_PATH):
                name = path[len(PACKAGE_PATH) :]
                if self.command == "GET":
                    found = name in double.packages
                    return self._answer(200 if found else 404, b"" if found else b"Package not found.", "text/plain")
                if self.command == "PUT":
                    double.packages[name] = body
                    return self._answer(200, b"", "text/plain")
            return self._forward(body)

        def _forward(self, body):
            if not double.forward_url:
                return self._answer(404, b"Not found.", "text/plain")
            headers = {key: value for key, value in self.headers.items() if key.lower() == "content-type"}
            request = urllib.request.Request(
                double.forward_url + self.path, data=body or None, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data, kind = response.status, response.read(), response.headers.get("Content-Type")
            except urllib.error.HTTPError as error:
                status, data, kind = error.code, error.read(), error.headers.get("Content-Type")
            except OSError as error:
                return self._answer(502, str(error).encode(), "text/plain")
            return self._answer(status, data, kind or "application/octet-stream")

        do_GET = do_PUT = do_POST = do_DELETE = _serve

    return Handler
