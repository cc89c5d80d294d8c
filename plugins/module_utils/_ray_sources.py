# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Where a Ray cluster status comes from: the ``ray status`` CLI, the dashboard's HTTP API, or given text.

Each reader returns an *observation*: the dict of ``parse_status_text`` plus ``raw`` (the text read),
``source`` and, when the read failed, ``source_error`` (``kind``, ``where``, ``detail``).
"""

from __future__ import annotations

import json
import os
import socket

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import fetch_url

from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_proxy import module_transport
from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_refusal import api_server_refusal
from ansible_collections.llmops.ray_vllm.plugins.module_utils._ray_status import (
    DashboardAnswerError,
    NodeTracker,
    classify_cli_failure,
    cluster_status_text_from_json,
    count_registered_nodes,
    describe_expectations,
    describe_observation,
    evaluate,
    merge_node_details,
    nodes_from_state_api,
    parse_status_text,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._wait import poll

CLUSTER_STATUS_PATH = "/api/cluster_status?format=1"
# detail=1 adds is_head_node, labels and state_message; the default limit (100) would cut big clusters.
STATE_API_NODES_PATH = "/api/v0/nodes?detail=1&limit=10000"


def observe_text(text, source="status_text"):
    """An observation from text someone else captured (e.g. ``ray status`` run in the head pod)."""
    observation = parse_status_text(text)
    observation["node_details"] = merge_node_details(observation["node_details"], None)
    observation.update(raw=text, source=source, source_error=None, warnings=[])
    return observation


def run_ray_status(module, ray_binary, address, verbose=True, token=None):
    """Run ``ray status --address ADDRESS [-v]``; returns ``(rc, stdout, stderr, argv)``."""
    argv = [ray_binary, "status", "--address", address]
    environ = {}
    if token:
        # Ray >= 2.52 reads these; older releases ignore them.
        environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    rc, stdout, stderr = module.run_command(argv + (["-v"] if verbose else []), environ_update=environ)
    if verbose and rc != 0 and "No such option" in (stderr or ""):
        # -v is a hidden flag; should a release drop it, the plain report is still worth having.
        rc, stdout, stderr = module.run_command(argv, environ_update=environ)
    return rc, stdout, stderr, argv


def split_address(address):
    """``"10.0.0.1:6379"`` -> ``("10.0.0.1", 6379)``, ``"[fd00::1]:6379"`` -> ``("fd00::1", 6379)``; None if no port."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def probe_tcp(address, timeout):
    """Why a TCP connection to ``address`` fails, or None when it connects (or the address has no port)."""
    target = split_address(address)
    if target is None:
        return None
    try:
        with socket.create_connection(target, timeout=timeout):
            return None
    except OSError as exc:
        return f"TCP connection to {target[0]}:{target[1]} failed: {exc}"


def observe_cli(module, ray_binary, address, verbose=True, token=None, timeout=30):
    """An observation from the local ``ray status`` CLI against the GCS at ``address``."""
    # `ray status` retries a closed port for about 40 s; a plain TCP connect tells the same at once.
    refused = probe_tcp(address, timeout)
    if refused:
        observation = observe_text("", source="address")
        observation["source_error"] = dict(kind="connection", where=address, detail=refused, rc=None)
        return observation
    rc, stdout, stderr, _argv = run_ray_status(module, ray_binary, address, verbose, token)
    observation = observe_text(stdout, source="address")
    if not observation["status_found"] and not observation["message"]:
        error = classify_cli_failure(stdout, stderr, rc)
        error["where"] = address
        observation["source_error"] = error
        observation["raw"] = "\n".join(part for part in (stdout, stderr) if part)
    return observation


def get_json(module, url, token=None, timeout=30, transport=None):
    """GET ``url`` and decode JSON. Returns ``(answer, error)``; ``error`` is a source_error dict or None.

    ``transport`` (a _kube_proxy.Transport) adds the API server's credentials and CA for the service proxy.
    """
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    fetch = transport.fetch if transport else fetch_url
    response, info = fetch(module, url, headers=headers, method="GET", timeout=timeout)
    status = info.get("status", -1)
    if response is None or status != 200:
        body = to_text(info.get("body") or b"", errors="surrogate_or_strict").strip()
        if status is None or status < 0:
            return None, dict(kind="http_unreachable", where=url, detail=info.get("msg") or "no answer")
        refusal = api_server_refusal(status, body, "GET", url) if transport else None
        if refusal:  # the API server's RBAC, not the Ray dashboard's token
            return None, dict(kind="api_refused", where=url, detail=refusal)
        detail = "HTTP {}{}".format(status, (f": {body[:300]}") if body else "")
        kind = "http_unauthorized" if status in (401, 403) else "http_status"
        return None, dict(kind=kind, where=url, detail=detail)
    body = response.read()
    try:
        return json.loads(to_text(body, errors="surrogate_or_strict")), None
    except ValueError:
        snippet = to_text(body[:200], errors="surrogate_or_strict")
        return None, dict(kind="http_answer", where=url, detail=f"not JSON: {snippet!r}")


def observe_dashboard(module, dashboard_url, token=None, timeout=30, with_nodes=True, transport=None):
    """An observation from the dashboard: the status text, plus per-node facts from the state API."""
    base = dashboard_url.rstrip("/")
    url = base + CLUSTER_STATUS_PATH
    answer, error = get_json(module, url, token, timeout, transport)
    text = ""
    if error is None:
        try:
            text = cluster_status_text_from_json(answer)
        except DashboardAnswerError as exc:
            error = dict(kind="http_answer", where=url, detail=str(exc))
    if error is not None:
        observation = observe_text("", source="dashboard_url")
        observation["source_error"] = error
        observation["raw"] = json.dumps(answer) if answer is not None else ""
        return observation

    observation = observe_text(text, source="dashboard_url")
    if with_nodes:
        nodes_url = base + STATE_API_NODES_PATH
        nodes_answer, nodes_error = get_json(module, nodes_url, token, timeout, transport)
        if nodes_error is None:
            try:
                api_nodes = nodes_from_state_api(nodes_answer)
            except DashboardAnswerError as exc:
                nodes_error = dict(detail=str(exc))
        if nodes_error is not None:
            # The status text alone still answers the gate; only the per-node facts are lost.
            observation["warnings"].append("no per-node facts from {}: {}".format(nodes_url, nodes_error["detail"]))
        else:
            observation["node_details"] = merge_node_details(parse_status_text(text)["node_details"], api_nodes)
            count_registered_nodes(observation, api_nodes)
    return observation


def find_ray_binary(module, interpreter_dir=None):
    """``ray_binary`` if given, else ``ray`` on PATH or beside the interpreter; None when there is none."""
    given = module.params.get("ray_binary")
    if given:
        return given if os.path.isfile(given) and os.access(given, os.X_OK) else None
    return module.get_bin_path("ray", required=False, opt_dirs=[interpreter_dir] if interpreter_dir else None)


def make_observer(module, interpreter_dir=None, transport=None):
    """A function that reads the status once from the source the parameters name.

    ``transport`` (a _kube_proxy.Transport) reaches the dashboard of the ``service`` option.
    """
    params = module.params
    if params.get("status_text") is not None:
        text = params["status_text"]
        return lambda: observe_text(text)
    if transport is not None:
        # The transport sends the Ray token as X-Ray-Authorization: the API server keeps Authorization for itself.
        return lambda: observe_dashboard(
            module, transport.url, params.get("token"), params["request_timeout"], transport=transport
        )
    if params.get("dashboard_url"):
        return lambda: observe_dashboard(
            module, params["dashboard_url"], params.get("token"), params["request_timeout"]
        )
    ray_binary = find_ray_binary(module, interpreter_dir)
    if ray_binary is None:
        looked = params.get("ray_binary") or "ray on PATH%s" % (f" or in {interpreter_dir}" if interpreter_dir else "")
        error = dict(kind="ray_missing", where=params["address"], detail=f"not found or not executable: {looked}")

        def missing():
            observation = observe_text("", source="address")
            observation["source_error"] = error
            return observation

        return missing
    return lambda: observe_cli(
        module, ray_binary, params["address"], params["verbose"], params.get("token"), params["request_timeout"]
    )


def run_gate(module, interpreter_dir=None, clock=None, sleep=None):
    """Read (and with ``wait`` poll) the status, judge it, and return the module's result dict."""
    params = module.params
    transport = module_transport(module, ready=False) if params.get("service") else None
    observe_once = make_observer(module, interpreter_dir, transport)
    tracker = NodeTracker()
    expectations = dict(
        expected_nodes=params.get("expected_nodes"),
        expected_gpus=params.get("expected_gpus"),
        expected_cpus=params.get("expected_cpus"),
    )

    def observe():
        observation = tracker.update(observe_once())
        problems, terminal = evaluate(observation, fail_on_failures=params["fail_on_failures"], **expectations)
        observation.update(problems=problems, terminal=terminal)
        return observation

    # Given text never changes: one look is all there is.
    timeout = params["timeout"] if params["wait"] and params.get("status_text") is None else 0
    timing = {}
    if clock is not None:
        timing["clock"] = clock
    if sleep is not None:
        timing["sleep"] = sleep
    observation, attempts, elapsed = poll(
        observe, lambda seen: not seen["problems"] or seen["terminal"], timeout, params["interval"], **timing
    )
    for warning in observation.pop("warnings", []):
        module.warn(warning)
    observation.pop("terminal")
    observation.pop("extra_lines", None)
    ready = not observation["problems"]
    observation.update(ready=ready, attempts=attempts, elapsed=round(elapsed, 1))
    where = source_label(params, transport)
    observation["msg"] = gate_message(observation, where, expectations, attempts, elapsed, timeout)
    return observation


def source_label(params, transport=None):
    if params.get("status_text") is not None:
        return "the given status_text"
    if transport is not None:
        service = params["service"]
        return "the dashboard of Service {}/{}{} through the Kubernetes API server ({})".format(
            service["namespace"],
            service["name"],
            ":" + service["port"] if service.get("port") else "",
            transport.url,
        )
    if params.get("dashboard_url"):
        return "the dashboard at {}".format(params["dashboard_url"])
    return "the GCS at {}".format(params["address"])


def gate_message(observation, where, expectations, attempts, elapsed, timeout):
    """The module's ``msg``: what was expected, what was seen, why, and what to check."""
    expected = describe_expectations(**expectations)
    seen = describe_observation(observation)
    if observation["ready"]:
        return f"Ray cluster ready ({where}): expected {expected}; saw {seen}"
    waited = f" after {attempts} reads over {elapsed:.0f}s (timeout {timeout}s)" if timeout > 0 else ""
    return "Ray cluster not ready ({}){}: expected {}; saw {}. {}".format(
        where,
        waited,
        expected,
        seen,
        " ".join(problem[0].upper() + problem[1:] + "." for problem in observation["problems"]),
    )
