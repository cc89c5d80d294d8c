# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Probe a vLLM OpenAI-compatible server and classify what it is doing.

What real vLLM 0.32 (CPU) does, recorded in tests/fixtures/vllm/:

- While it loads the model, vLLM has bound its port but does not listen on it yet, so a connection is refused,
  exactly as when no server runs. A proxy in front (ingress, load balancer, nginx) answers 502/503/504 instead.
- Once it accepts connections the engine is up: /health 200, /v1/models lists the served name.
- /v1/* needs ``Authorization: Bearer <key>`` when started with --api-key: 401 ``{"error": "Unauthorized"}``.
  /health, /version and /metrics are never guarded.
- After its EngineCore process dies, /health answers 503 while /v1/models still answers 200, and a completion
  answers 500 (EngineDeadError). By default the API server then shuts itself down within about 5 seconds
  (VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1 keeps it up), so connections are refused again.
- /health stays 200 when the engine hangs without dying (a lost Ray worker), which is why readiness also needs a
  real completion.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.llmops.ray_vllm.plugins.module_utils._kube_refusal import api_server_refusal

STATUSES = (
    "unreachable",
    "loading",
    "engine_dead",
    "unauthorized",
    "model_missing",
    "not_answering",
    "tls_error",
    "server_ended",
    "ready",
)

# What the Kubernetes API server's service proxy (Go's TLS client) answers when its scheme is not the pod's: https to
# a plain HTTP server, or the reverse.
PROXY_TLS_MISMATCH_MARKERS = (
    "first record does not look like a TLS handshake",
    "server gave HTTP response to HTTPS client",
)

# What a proxy or load balancer answers when the server behind it does not accept connections (yet).
PROXY_UNAVAILABLE = (502, 503, 504)

METRIC_NAMES = {
    "num_requests_running": ("vllm:num_requests_running",),
    "num_requests_waiting": ("vllm:num_requests_waiting",),
    # vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc (it covers CPU KV cache too); accept both.
    "kv_cache_usage_perc": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
}

# Markers of a dead engine in vLLM's error bodies (EngineDeadError's message and class name).
ENGINE_DEAD_MARKERS = ("EngineDeadError", "EngineCore encountered an issue", "engine is dead", "Engine is dead")

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def base_url(url):
    """Normalise the base URL: no trailing slash, no trailing /v1 (an OpenAI client base_url is accepted too)."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def error_kind(error):
    """Classify an exception raised before any HTTP status came back.

    ``refused``/``dns``/``no_route``/``connect_timeout``: nothing answers at the address.
    ``no_answer``: a connection was accepted but no HTTP answer came (read timeout, closed or reset).
    ``tls``: the TLS handshake or certificate check failed.
    """
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    wrapped = isinstance(error, urllib.error.URLError)
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, socket.gaierror):
        return "dns"
    if isinstance(reason, (ssl.SSLError, ssl.CertificateError)):
        return "tls"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        # urllib wraps errors of connect and send in URLError; a timeout waiting for the answer comes bare.
        return "connect_timeout" if wrapped else "no_answer"
    if isinstance(
        reason, (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine, BrokenPipeError)
    ):
        return "no_answer"
    if isinstance(reason, OSError) and wrapped:
        return "no_route"
    if isinstance(reason, str) and "timed out" in reason:
        return "connect_timeout"
    return "other"


def http_exchange(url, method="GET", headers=None, payload=None, timeout=10, validate_certs=True, tls=None):
    """One HTTP request. Returns a dict with ``status`` (None when no HTTP answer came), ``body``, ``error``,
    ``error_kind`` and ``elapsed_s``; never raises for network or HTTP errors.

    ``tls`` may give ``ca_path``, ``client_cert`` and ``client_key`` (the API server's, for the service proxy)."""
    all_headers = dict(headers or {})
    data = None
    if payload is not None:
        data = json.dumps(payload)
        all_headers["Content-Type"] = "application/json"
    started = time.monotonic()
    result = {"url": url, "status": None, "body": "", "error": None, "error_kind": None}
    try:
        response = open_url(
            url,
            data=data,
            headers=all_headers,
            method=method,
            timeout=timeout,
            validate_certs=validate_certs,
            follow_redirects="safe",
            use_netrc=False,
            **(tls or {}),
        )
        result["status"] = response.getcode()
        result["body"] = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        result["status"] = error.code
        try:
            result["body"] = error.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException, AttributeError):
            result["body"] = ""
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        result["error"] = f"{type(reason).__name__}: {reason}"
        result["error_kind"] = error_kind(error)
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    return result


def parse_json(body):
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def error_message(body, limit=300):
    """The human part of an error body: OpenAI-style ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"detail": ...}``, or the text itself (HTML tags stripped), cut to ``limit`` characters."""
    parsed = parse_json(body)
    message = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        if message is None:
            message = parsed.get("message") or parsed.get("detail")
    if message is None:
        message = re.sub(r"<[^>]+>", " ", body or "")
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _context_length(entry):
    """vLLM's own ``max_model_len``, or Ray Serve LLM's ``metadata.max_request_context_length`` (the same limit)."""
    if entry.get("max_model_len") is not None:
        return entry["max_model_len"]
    metadata = entry.get("metadata")
    return metadata.get("max_request_context_length") if isinstance(metadata, dict) else None


def parse_models(body):
    """``[{"id": ..., "max_model_len": ...}]`` from a /v1/models body, or None when it is not a model list."""
    parsed = parse_json(body)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
        return None
    models = []
    for entry in parsed["data"]:
        if isinstance(entry, dict) and "id" in entry:
            models.append({"id": entry["id"], "max_model_len": _context_length(entry)})
    return models


def parse_version(body):
    parsed = parse_json(body)
    if isinstance(parsed, dict) and isinstance(parsed.get("version"), str):
        return parsed["version"]
    return None


def parse_prometheus(text):
    """``{metric name: [(labels dict, float value), ...]}`` from Prometheus text exposition format."""
    samples = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _METRIC_LINE.match(line)
        if not match:
            continue
        name, label_text, value = match.group(1), match.group(3), match.group(4)
        try:
            number = float(value)
        except ValueError:
            continue
        labels = {key: raw.replace('\\"', '"').replace("\\\\", "\\") for key, raw in _LABEL.findall(label_text or "")}
        samples.setdefault(name, []).append((labels, number))
    return samples


def summarize_metrics(samples):
    """The engine load figures: request counts summed over engines, KV cache usage as the fullest engine's."""
    summary = {}
    for key, names in METRIC_NAMES.items():
        for name in names:
            if name in samples:
                values = [value for _labels, value in samples[name]]
                summary[key] = max(values) if key == "kv_cache_usage_perc" else sum(values)
                if key != "kv_cache_usage_perc":
                    summary[key] = int(summary[key])
                break
    return summary


def parse_completion(body):
    """``(text, completion_tokens)`` of a chat completion body; text is None when there is no choice."""
    parsed = parse_json(body)
    if not isinstance(parsed, dict):
        return None, None
    text = None
    choices = parsed.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:
            text = choices[0].get("text")
    usage = parsed.get("usage") if isinstance(parsed.get("usage"), dict) else {}
    return text, usage.get("completion_tokens")


def describe(exchange):
    """'answered 401 (Unauthorized)' or 'failed: ConnectionRefusedError: ...' for messages."""
    if exchange["status"] is None:
        return "got no HTTP answer ({})".format(exchange["error"])
    detail = error_message(exchange["body"], limit=200) if exchange["status"] >= 400 else ""
    suffix = f" ({detail})" if detail else ""
    return f"answered {exchange['status']}{suffix}"


def looks_engine_dead(exchange):
    return (
        exchange["status"] is not None
        and exchange["status"] >= 500
        and any(marker in exchange["body"] for marker in ENGINE_DEAD_MARKERS)
    )


def classify(observation, model=None, completion_wanted=True, expect=None):
    """Decide the status from one round of probes.

    ``observation`` holds the exchanges ``health``, ``models`` and, when sent, ``completion`` (each as returned by
    :func:`http_exchange`), and ``url``. Returns ``(status, problems)``; ``problems`` is empty only for ``ready``.
    """
    url = observation["url"]
    health = observation["health"]
    models_exchange = observation.get("models")
    completion = observation.get("completion")

    if observation.get("tls_expected"):
        return "tls_error", [
            f"{url} is plain http, but the server there serves TLS: /health over http {describe(health)}, while "
            f"over https it {describe(observation['tls_expected'])}. Fix: use an https:// URL (and ca_path, the CA "
            "that issued its certificate)."
        ]
    if health["status"] is None:
        if health["error_kind"] == "no_answer":
            return "loading", [
                f"{url}/health accepted the connection but {describe(health)}: something listens there without "
                "serving HTTP yet (a port-forward or proxy whose vLLM backend is still loading or gone)."
            ]
        if health["error_kind"] == "tls":
            return "tls_error", [tls_problem(url, health["error"], observation.get("ca_path"))]
        return "unreachable", [
            f"{url}/health {describe(health)}: nothing accepts connections at that address. A vLLM server that is "
            "still loading its model refuses connections too (it only listens once the engine is up), so this is "
            "either a server that is still starting or one that is not running; check url, the process and its log."
        ]

    models_status = models_exchange["status"] if models_exchange else None
    # Through the service proxy a 401/403 may be the API server's (RBAC), not vLLM's key or a proxy's credentials.
    asked = ((health, "GET", "/health"), (models_exchange, "GET", "/v1/models"))
    for exchange, method, path in asked + ((completion, "POST", "/v1/chat/completions"),):
        refusal = api_server_refusal(exchange["status"], exchange["body"], method, url + path) if exchange else None
        if refusal:
            return "unauthorized", [refusal]
    if health["status"] in PROXY_UNAVAILABLE and any(marker in health["body"] for marker in PROXY_TLS_MISMATCH_MARKERS):
        return "tls_error", [
            f"{url}/health {describe(health)}: the proxy in front speaks another scheme than the server (https to a "
            "plain HTTP server, or http to a TLS one). Fix: through the Kubernetes service proxy, set service.scheme "
            "to https exactly when the server serves TLS (vllm_serve_tls_enabled)."
        ]
    if health["status"] in PROXY_UNAVAILABLE:
        if health["status"] == 503 and models_status is not None and models_status not in PROXY_UNAVAILABLE:
            # vLLM's own /health returns 503 only for EngineDeadError, and /v1/* answering proves it is vLLM.
            return "engine_dead", [
                f"{url}/health answered 503 while /v1/models {describe(models_exchange)}: the vLLM API server "
                "runs but its engine is dead."
            ]
        return "loading", [
            "{}/health {} and /v1/models {}: the HTTP layer in front of vLLM answers but vLLM itself does not "
            "accept connections yet (model still loading, or the server is gone).".format(
                url, describe(health), describe(models_exchange) if models_exchange else "was not asked"
            )
        ]
    if health["status"] in (401, 403):
        return "unauthorized", [
            f"{url}/health {describe(health)}: vLLM never guards /health, so a proxy in front of it wants "
            "credentials; pass them in headers."
        ]
    if health["status"] != 200:
        return "not_answering", [
            f"{url}/health {describe(health)}, expected 200: the URL may not point at a vLLM OpenAI server (check "
            "host, port and path prefix)."
        ]

    if models_status in (401, 403):
        return "unauthorized", [
            "{}/v1/models {}: the API key sent differs from the server's --api-key (or VLLM_API_KEY, often from a "
            "Kubernetes Secret){}.".format(
                url, describe(models_exchange), "" if observation.get("api_key_sent") else "; no api_key was sent"
            )
        ]
    if models_status in PROXY_UNAVAILABLE:
        return "loading", [f"{url}/v1/models {describe(models_exchange)} while /health answered 200."]
    models = parse_models(models_exchange["body"]) if models_status == 200 else None
    if models is None:
        return "not_answering", [
            f"{url}/v1/models {describe(models_exchange)}, expected 200 with a model list: the URL may not point "
            "at a vLLM OpenAI server."
        ]
    served = [entry["id"] for entry in models]
    if not served:
        return "model_missing", [f"{url}/v1/models lists no model at all."]
    if model is not None and model not in served:
        return "model_missing", [
            "{} does not serve model {!r}; it serves: {}. The name must equal the server's --served-model-name (or "
            "its --model when no served name is set).".format(url, model, ", ".join(served))
        ]

    if not completion_wanted:
        return "ready", []
    if completion is None:
        return "not_answering", ["no test completion was sent."]
    if looks_engine_dead(completion):
        return "engine_dead", [
            f"{url}/v1/chat/completions {describe(completion)}: the engine behind the API server is dead."
        ]
    if completion["status"] in (401, 403):
        return "unauthorized", [f"{url}/v1/chat/completions {describe(completion)}."]
    if completion["status"] == 404:
        return "model_missing", [f"{url}/v1/chat/completions {describe(completion)}."]
    if completion["status"] != 200:
        if completion["status"] is None and completion["error_kind"] == "refused":
            # /health answered a moment ago: the server went away during the completion (default on engine death).
            return "engine_dead", [
                "{} stopped accepting connections during the test completion ({}): vLLM shuts its API server down "
                "once its engine died.".format(url, completion["error"])
            ]
        return "not_answering", [f"test completion {describe(completion)}."]
    text = parse_completion(completion["body"])[0]
    if not text or not text.strip():
        return "not_answering", ["test completion answered 200 with empty text: {}".format(completion["body"][:300])]
    if expect is not None and not re.search(expect, text):
        return "not_answering", [f"test completion answered {text!r}, which does not match expect {expect!r}."]
    return "ready", []


def tls_problem(url, error, ca_path=None):
    """What a failed TLS connection says: the certificate did not verify, or the two ends speak different schemes."""
    trusted = f"the CA in ca_path={ca_path}" if ca_path else "the system's CA certificates (no ca_path given)"
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "CertificateError" in text:
        host = urlsplit(url).hostname
        return (
            f"{url}/health: the server's certificate does not verify ({text}). Expected a certificate issued by "
            f"{trusted} that names {host} in its subjectAltName; seen one that does not (another issuer, a "
            "self-signed one, or another name). Fix: pass the CA that signed the server's certificate as ca_path "
            "(vllm_serve_tls_ca_file), reach the server by a name its certificate holds, or issue the certificate "
            "for this name."
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "http request" in text.lower():
        return (
            f"{url}/health failed the TLS handshake ({text}): the server speaks plain HTTP, not TLS. Fix: use an "
            "http:// URL, or start the server with TLS (vllm_serve_tls_enabled)."
        )
    return (
        f"{url}/health failed the TLS handshake ({text}), trusting {trusted}. Fix: check the URL scheme, the "
        "server's certificate and key, and ca_path."
    )


ADVICE = {
    "unreachable": "If the server was just started, wait longer (wait=true, or raise timeout; a large model can take "
    "many minutes to load); otherwise start it or fix url.",
    "loading": "Wait longer (wait=true, or raise timeout). If it lasts past the model's usual load time, read the "
    "vLLM server log: the server may have exited.",
    "engine_dead": "Read the vLLM server log for the EngineCore error (out of memory, a lost Ray worker or GPU, ...) "
    "and restart the server; by default vLLM exits a few seconds after its engine died.",
    "unauthorized": "Pass the key the server was started with (--api-key / VLLM_API_KEY, or the Secret it comes "
    "from) as api_key.",
    "model_missing": "Use one of the served names as model, or restart vLLM with --served-model-name set to it.",
    "not_answering": "Read the vLLM server log; raise request_timeout if the model is only slow, or fix prompt, "
    "max_tokens or expect.",
    "server_ended": "Waiting does not help: the process that serves vLLM has ended. Fix what its log names, then "
    "run again.",
    "tls_error": "Waiting does not help: make the URL's scheme match the server's (https when it was started with "
    "--ssl-certfile) and give the CA that issued its certificate as ca_path.",
}


def observe(
    url,
    model=None,
    api_key=None,
    headers=None,
    completion_wanted=True,
    prompt="Say hello.",
    max_tokens=16,
    expect=None,
    request_timeout=30,
    validate_certs=True,
    exchange=http_exchange,
    api_key_header="Authorization",
    tls=None,
):
    """Probe the server once and return the full result (``ready``, ``status``, facts, ``problems``, ``msg``).

    The key goes in ``Authorization: Bearer <key>``, or as it is in ``api_key_header`` when that names another
    header (through the Kubernetes API server's proxy, which keeps Authorization for itself)."""
    url = base_url(url)
    sent_headers = dict(headers or {})
    if api_key:
        if api_key_header.lower() == "authorization":
            sent_headers["Authorization"] = f"Bearer {api_key}"
        else:
            sent_headers[api_key_header] = api_key
    extra = {"tls": tls} if tls else {}

    def get(path):
        return exchange(
            url + path, headers=sent_headers, timeout=request_timeout, validate_certs=validate_certs, **extra
        )

    observation = {
        "url": url,
        "api_key_sent": bool(api_key) or "Authorization" in sent_headers,
        "ca_path": (tls or {}).get("ca_path"),
    }
    observation["health"] = get("/health")
    if observation["health"]["error_kind"] == "no_answer" and url.lower().startswith("http://"):
        # A TLS server closes a plain HTTP request without an answer, as a port-forward to nothing does: one look
        # over https (not verified: only whether TLS answers there) tells them apart.
        over_tls = exchange(
            "https://" + url[len("http://") :] + "/health", timeout=request_timeout, validate_certs=False
        )
        if over_tls["status"] is not None:
            observation["tls_expected"] = over_tls
    result = {
        "url": url,
        "models": [],
        "max_model_len": None,
        "version": None,
        "metrics": {},
        "completion": {},
        "endpoints": {"/health": observation["health"]["status"]},
    }
    if observation["health"]["status"] is not None:
        observation["models"] = get("/v1/models")
        result["endpoints"]["/v1/models"] = observation["models"]["status"]
        listed = parse_models(observation["models"]["body"]) if observation["models"]["status"] == 200 else None
        if listed:
            result["models"] = [entry["id"] for entry in listed]
            chosen = next((entry for entry in listed if entry["id"] == model), None if model else listed[0])
            result["max_model_len"] = chosen["max_model_len"] if chosen else None
        version = get("/version")
        result["endpoints"]["/version"] = version["status"]
        result["version"] = parse_version(version["body"]) if version["status"] == 200 else None
        metrics = get("/metrics")
        result["endpoints"]["/metrics"] = metrics["status"]
        if metrics["status"] == 200:
            result["metrics"] = summarize_metrics(parse_prometheus(metrics["body"]))
        target = model if model in result["models"] else None
        if target is None and model is None and result["models"]:
            target = result["models"][0]
        if completion_wanted and target is not None and observation["health"]["status"] == 200:
            payload = {
                "model": target,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            completion = exchange(
                url + "/v1/chat/completions",
                method="POST",
                headers=sent_headers,
                payload=payload,
                timeout=request_timeout,
                validate_certs=validate_certs,
                **extra,
            )
            observation["completion"] = completion
            result["endpoints"]["/v1/chat/completions"] = completion["status"]
            text, tokens = parse_completion(completion["body"]) if completion["status"] == 200 else (None, None)
            result["completion"] = {
                "text": text,
                "latency_s": completion["elapsed_s"],
                "completion_tokens": tokens,
                "model": target,
            }

    status, problems = classify(observation, model=model, completion_wanted=completion_wanted, expect=expect)
    result.update(status=status, ready=status == "ready", problems=problems)
    result["msg"] = summary_message(result, model, completion_wanted)
    return result


def watching_server(probe, server_ended):
    """``probe`` that, while vLLM is not ready, also asks ``server_ended()`` whether the process serving it has ended.

    ``server_ended`` returns a message saying why (such as a Ray job's status and log tail), or None. A gate then
    stops at once with that message instead of waiting out its timeout for a server that is gone.
    """

    def watched():
        result = probe()
        if result["ready"]:
            return result
        ended = server_ended()
        if ended:
            seen = result["status"]
            result.update(status="server_ended", problems=result["problems"] + [ended])
            result["msg"] = "Expected vLLM at {} to become ready; it was {} and will not be: {} {}".format(
                result["url"], seen, ended, ADVICE["server_ended"]
            )
        return result

    return watched


def summary_message(result, model, completion_wanted):
    """One message: what was expected, what was seen, the likely cause and what to do."""
    status = result["status"]
    if status == "ready":
        served = model or (result["models"][0] if result["models"] else "?")
        message = "vLLM {} at {} serves {} (max_model_len {})".format(
            result["version"] or "(version unknown)", result["url"], served, result["max_model_len"]
        )
        if completion_wanted:
            message += "; test completion answered {!r} in {:.2f}s".format(
                result["completion"].get("text"), result["completion"].get("latency_s") or 0.0
            )
        return message + "."
    expected = "vLLM at {} serving {}{}".format(
        result["url"],
        repr(model) if model else "a model",
        " and answering a test completion" if completion_wanted else "",
    )
    return "Expected {}; status {}: {} {}".format(expected, status, " ".join(result["problems"]), ADVICE[status])
