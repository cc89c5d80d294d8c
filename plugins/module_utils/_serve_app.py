# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Keep one Ray Serve application deployed through the dashboard's Serve REST API, and judge whether it is ready.

What Ray 2.60's dashboard does (``ray/dashboard/modules/serve``, ``ray/dashboard/modules/job/job_head.py``):

- ``GET /api/serve/applications/`` answers the Serve instance: ``http_options``, ``proxy_location`` and, per
  application, ``status``, ``message``, ``deployed_app_config`` (the config as it was PUT) and its deployments with
  their ``status``, ``message``, ``target_num_replicas`` and replicas (``state``, ``pid``, ``node_ip`` ...).
- ``PUT /api/serve/applications/`` is declarative for the whole instance: an application left out of the list is
  deleted. So the config of every other application is put back as it was deployed.
- ``DELETE /api/serve/applications/`` shuts Serve down with all its applications.
- ``PUT /api/packages/gcs/<name>.zip`` stores a runtime_env package in the GCS; a Serve config may then name it as
  ``gcs://<name>.zip`` (the dashboard cannot take local paths). The name carries the content's hash, so an upload
  is needed once per content and a re-run finds it.

A changed config is applied by Serve itself, in place: a new replica count (or autoscaling range) adds or stops
replicas and keeps the others serving.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_job import (
    RayJobError,
    RayJobsClient,
    stable_json,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import poll

SERVE_PATH = "/api/serve/applications/"
PACKAGE_PATH = "/api/packages/gcs/"
# The State API's list of Serve controllers not dead (ALIVE, or RESTARTING with its applications kept). A cluster
# without one runs no Serve application. The dashboard answers this in milliseconds, where its Serve API's first
# request after the head starts takes over a second (it sets Serve's client up).
SERVE_CONTROLLERS_PATH = (
    "/api/v0/actors?filter_keys=class_name&filter_predicates=%3D&filter_values=ServeController"
    "&filter_keys=state&filter_predicates=!%3D&filter_values=DEAD&limit=1&detail=false"
)
PROXY_LOCATIONS = ("HeadOnly", "EveryNode", "Disabled")
STATUSES = ("unreachable", "not_deployed", "deploying", "deploy_failed", "unhealthy", "scaling", "ready")
# Replica states that serve requests (ray.serve._private.common.ReplicaState).
SERVING_STATES = ("RUNNING",)
# A fixed time for every zip entry, so that equal files give an equal package and an equal URI.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

ADVICE = {
    "unreachable": "Start the Ray head with its dashboard, or fix dashboard_url (or service).",
    "not_deployed": "Deploy the application (serve_app state=present).",
    "deploying": "Wait longer (wait=true or a longer timeout): replicas load their model. A replica that cannot be "
    "scheduled says so in the deployment's message (the resources it needs and what the cluster has).",
    "deploy_failed": "Read the message above and the replica logs (serve/ under the Ray session's logs directory); "
    "fix the config and deploy again.",
    "unhealthy": "A replica failed its health check or died; Serve replaces it. Read the replica logs if it lasts.",
    "scaling": "Fewer replicas run than expected: wait, or read the deployment's message for what holds them back.",
}


class ServeAppError(RayJobError):
    """A failure of the Serve API or of a check, with its message and the result keys known so far."""


# ---------------------------------------------------------------------------------------------------------------------
# runtime_env packages


def directory_files(path):
    """``{relative path: bytes}`` of the regular files under ``path``, without caches; sorted for a stable zip."""
    files = {}
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(name for name in dirs if name != "__pycache__")
        for name in sorted(names):
            if name.endswith(".pyc"):
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, path)] = handle.read()
    return files


def package_zip(files):
    """A zip of ``files`` (relative path to bytes) whose bytes depend on the files alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[name])
    return buffer.getvalue()


def package_uri(data):
    """``gcs://_ray_pkg_<sha256 prefix>.zip``: the URI Ray's runtime_env takes for an uploaded package."""
    return f"gcs://_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"


# ---------------------------------------------------------------------------------------------------------------------
# the dashboard's Serve API


class ServeClient(RayJobsClient):
    """The Serve REST API and the runtime_env package API of one Ray dashboard."""

    def details(self):
        _status, answer = self.request("GET", SERVE_PATH)
        if not isinstance(answer, dict):
            raise ServeAppError(
                f"GET {self.base_url}{SERVE_PATH} did not answer the Serve instance as JSON: {str(answer)[:300]}. "
                "Does the Ray head have Serve installed (ray[serve])?"
            )
        return answer

    def serve_absent(self):
        """True when the State API lists no Serve controller that is not dead; False when it lists one or does not
        answer as expected (then :meth:`details` decides)."""
        try:
            _status, answer = self.request("GET", SERVE_CONTROLLERS_PATH)
        except RayJobError:
            return False
        listed = ((answer or {}).get("data") or {}).get("result") if isinstance(answer, dict) else None
        return isinstance(listed, dict) and listed.get("result") == []

    def deploy(self, config):
        self.request("PUT", SERVE_PATH, config)

    def shutdown(self):
        self.request("DELETE", SERVE_PATH)

    def has_package(self, uri):
        try:
            self.request("GET", PACKAGE_PATH + uri.rsplit("/", 1)[-1])
        except RayJobError as error:
            if getattr(error, "http_status", None) == 404:
                return False
            raise
        return True

    def upload_package(self, uri, data):
        self.request("PUT", PACKAGE_PATH + uri.rsplit("/", 1)[-1], raw=data)


def deployed_configs(details):
    """``{application name: the config it was deployed with}`` of the applications that have one."""
    applications = details.get("applications") or {}
    return {
        name: app["deployed_app_config"]
        for name, app in applications.items()
        if isinstance(app, dict) and app.get("deployed_app_config") and app.get("status") != "DELETING"
    }


def serve_running(details):
    """Whether a Serve instance runs (its controller answers with HTTP options)."""
    return bool(details.get("controller_info")) and bool(details.get("http_options"))


# ---------------------------------------------------------------------------------------------------------------------
# present and absent


def application_config(spec):
    """The application entry of a Serve config from ``spec`` (name, route_prefix, import_path, args, runtime_env,
    deployments: per-deployment options such as num_replicas, which Serve changes in place)."""
    app = {
        "name": spec["name"],
        "route_prefix": spec.get("route_prefix") or "/",
        "import_path": spec["import_path"],
        "args": spec.get("args") or {},
    }
    if spec.get("runtime_env"):
        app["runtime_env"] = spec["runtime_env"]
    if spec.get("deployments"):
        app["deployments"] = spec["deployments"]
    return app


def instance_config(details, applications, serve_options):
    """The whole-instance config to PUT: ``applications`` with the running instance's HTTP options, or
    ``serve_options`` (``http_options``, ``proxy_location``) when Serve is not running yet."""
    config = {"applications": applications}
    if serve_running(details):
        config["http_options"] = {key: details["http_options"][key] for key in ("host", "port")}
        if details.get("proxy_location"):
            config["proxy_location"] = details["proxy_location"]
    else:
        config.update({key: value for key, value in serve_options.items() if value})
    return config


def http_options_problem(details, serve_options):
    """A message when Serve runs with other HTTP options than asked (Serve cannot change them while it runs)."""
    wanted = serve_options.get("http_options") or {}
    if not serve_running(details) or not wanted:
        return None
    running = details["http_options"]
    differing = {key: value for key, value in wanted.items() if value is not None and running.get(key) != value}
    if not differing:
        return None
    seen = ", ".join(f"{key}={running.get(key)!r}" for key in sorted(differing))
    asked = ", ".join(f"{key}={value!r}" for key, value in sorted(differing.items()))
    return (
        f"Serve already runs on this Ray cluster with http_options {seen}, but {asked} was asked; Serve cannot move "
        "its proxies while it runs. Use the running values, or shut Serve down first (delete its applications with "
        "state=absent, or restart Ray)."
    )


def comparable(value):
    """``value`` as Serve echoes a config back: keys set to None left out, whole floats as ints (5.0 is 5)."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same_config(deployed, desired):
    """Whether Serve runs ``desired`` already: its deployed config equals it once both are ``comparable``."""
    return stable_json(comparable(deployed)) == stable_json(comparable(desired))


def ensure_present(client, spec, serve_options, package=None, check_mode=False):
    """Deploy ``spec`` unless it is deployed with this config already. ``package``: ``(uri, bytes)`` or None.

    Returns ``{"changed", "config", "diff"}``; raises ServeAppError.
    """
    details = client.details()
    problem = http_options_problem(details, serve_options)
    if problem:
        raise ServeAppError(problem)
    desired = application_config(spec)
    configs = deployed_configs(details)
    before = configs.get(spec["name"])
    package_missing = package is not None and not client.has_package(package[0])
    changed = before is None or not same_config(before, desired) or package_missing
    if changed and not check_mode:
        if package_missing:
            client.upload_package(*package)
        others = [config for name, config in sorted(configs.items()) if name != spec["name"]]
        client.deploy(instance_config(details, [*others, desired], serve_options))
    return {"changed": changed, "config": desired, "diff": {"before": before or {}, "after": desired}}


def ensure_absent(client, name, check_mode=False, wait=None):
    """Delete application ``name`` and wait until Serve has stopped its replicas. Returns ``{"changed", "diff"}``.

    ``wait``: ``{"timeout", "interval"}`` and optionally ``clock`` and ``sleep`` (poll's).
    """
    unchanged = {"changed": False, "diff": {"before": {}, "after": {}}}
    if client.serve_absent():
        return unchanged
    details = client.details()
    configs = deployed_configs(details)
    before = configs.get(name)
    if before is None:
        return unchanged
    if not check_mode:
        others = [config for other, config in sorted(configs.items()) if other != name]
        if others:
            client.deploy(instance_config(details, others, {}))
        else:
            # The last application: shut Serve down, which frees its proxy's port as well.
            client.shutdown()
        _wait_gone(client, name, dict(wait or {"timeout": 120, "interval": 2}))
    return {"changed": True, "diff": {"before": before, "after": {}}}


def _wait_gone(client, name, wait):
    applications, _attempts, _elapsed = poll(
        lambda: client.details().get("applications") or {}, lambda found: name not in found, **wait
    )
    if name in applications:
        raise ServeAppError(
            f"Serve application {name!r} was deleted but still exists after {wait['timeout']} s (status "
            f"{applications[name].get('status')}): its replicas did not stop. Read the Serve controller's log "
            "(serve/controller_*.log under the Ray session's logs directory)."
        )


# ---------------------------------------------------------------------------------------------------------------------
# readiness


def deployment_summary(deployment):
    """``{"status", "message", "target", "running", "states"}`` of one deployment of the Serve API's details."""
    states = {}
    for replica in deployment.get("replicas") or []:
        states[replica.get("state")] = states.get(replica.get("state"), 0) + 1
    return {
        "status": deployment.get("status"),
        "message": deployment.get("message") or "",
        "target": deployment.get("target_num_replicas"),
        "running": sum(count for state, count in states.items() if state in SERVING_STATES),
        "states": states,
    }


def application_summary(details, name):
    """``None`` or ``{"status", "message", "route_prefix", "deployments": {name: deployment_summary}}``."""
    app = (details.get("applications") or {}).get(name)
    if not isinstance(app, dict):
        return None
    return {
        "status": app.get("status"),
        "message": app.get("message") or "",
        "route_prefix": app.get("route_prefix"),
        "deployments": {key: deployment_summary(value) for key, value in (app.get("deployments") or {}).items()},
    }


def serve_app_readiness(details, name, replicas=None):
    """``(status, messages)``: whether application ``name`` serves, as one of STATUSES.

    ``replicas`` maps a deployment name to the running replicas it needs at least; the others need their
    ``target_num_replicas``. Ready means the application is RUNNING and every deployment has its replicas.
    """
    summary = application_summary(details, name)
    if summary is None or summary["status"] == "DELETING":
        known = ", ".join(sorted(details.get("applications") or {})) or "none"
        return "not_deployed", [f"Serve has no application {name!r} (applications: {known})."]
    messages = _status_messages(name, summary)
    status = summary["status"]
    if status == "DEPLOY_FAILED":
        return "deploy_failed", messages
    if status == "UNHEALTHY":
        return "unhealthy", messages
    if status != "RUNNING":
        return "deploying", messages
    short = _short_deployments(summary, replicas or {})
    if short:
        return "scaling", messages + short
    return "ready", []


def _status_messages(name, summary):
    detail = f": {summary['message']}" if summary["message"] else "."
    messages = [f"Application {name!r} is {summary['status']}{detail}"]
    for deployment, info in sorted(summary["deployments"].items()):
        states = ", ".join(f"{count} {state}" for state, count in sorted(info["states"].items())) or "no replicas"
        line = f"Deployment {deployment}: {info['status']}, {states} of {info['target']} wanted"
        messages.append(line + (f"; {info['message']}" if info["message"] else "."))
    return messages


def _short_deployments(summary, replicas):
    short = []
    for deployment, needed in replicas.items():
        if isinstance(needed, bool) or not isinstance(needed, int) or needed < 0:
            raise ServeAppError(f"replicas[{deployment!r}]={needed!r}: expected a whole number of replicas, 0 or more.")
    for deployment, info in sorted(summary["deployments"].items()):
        needed = replicas.get(deployment, info["target"] or 0)
        if info["running"] < needed:
            short.append(f"Deployment {deployment} runs {info['running']} replica(s); {needed} are expected.")
    unknown = sorted(set(replicas) - set(summary["deployments"]))
    short.extend(
        f"Deployment {deployment} is expected but the application has only: "
        f"{', '.join(sorted(summary['deployments'])) or 'none'}."
        for deployment in unknown
    )
    return short


# ---------------------------------------------------------------------------------------------------------------------
# the modules' way in


def client_from_module(module, transport_for_service):
    """The ServeClient of a module's ``dashboard_url`` or ``service`` (then through ``transport_for_service(module)``,
    the Kubernetes API server's proxy), with its ``token`` and ``validate_certs``."""
    params = module.params
    if params.get("service"):
        transport = transport_for_service(module)
        return ServeClient(transport.url, params.get("token"), transport.validate_certs, opener=transport.open_url)
    return ServeClient(params["dashboard_url"], params.get("token"), params["validate_certs"])


def where(params):
    """How messages name the dashboard: its URL, or the Service it is reached through."""
    service = params.get("service")
    if service:
        return f"service {service['namespace']}/{service['name']}:{service.get('port') or ''}".rstrip(":")
    return params["dashboard_url"]


def checked_replicas(replicas):
    """serve_status's ``replicas`` option with whole numbers (Jinja may hand them over as strings)."""
    checked = {}
    for deployment, needed in (replicas or {}).items():
        text = str(needed).strip()
        if isinstance(needed, bool) or not text.isdigit():
            raise ServeAppError(f"replicas[{deployment!r}]={needed!r}: expected a whole number of replicas, 0 or more.")
        checked[deployment] = int(text)
    return checked


def observe_readiness(client, params):
    """One look of the gate: ``{"status", "ready", "application", "messages", "msg"}`` for serve_status."""
    name = params["name"]
    try:
        details = client.details()
    except RayJobError as error:
        status, messages, summary = "unreachable", [error.msg], None
    else:
        status, messages = serve_app_readiness(details, name, params.get("replicas"))
        summary = application_summary(details, name)
    if status == "ready":
        msg = f"Serve application {name!r} at {where(params)} is RUNNING with all its replicas."
    else:
        msg = f"Serve application {name!r} at {where(params)} is not ready ({status}): {' '.join(messages)} "
        msg += ADVICE[status]
    return {"status": status, "ready": status == "ready", "application": summary, "messages": messages, "msg": msg}
