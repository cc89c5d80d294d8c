# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The Ray Serve LLM application that serves the plan's replicas behind one OpenAI endpoint (Ray 2.60).

``serve_llm_application`` turns vLLM's effective settings (``_vllm_command.serving_settings``) and the plan's
replica keys into the application spec that ``serve_app`` deploys:

- ``import_path: ray.serve.llm:build_openai_app`` with one ``LLMConfig``: the served name and the model path, the
  engine arguments of one replica (the same TP, PP, max_model_len and dtype as the single-engine path), the plan's
  placement-group bundles and strategy, and ``deployment_config`` with the replica count (or autoscaling), a bounded
  ``max_ongoing_requests`` and Ray's prefix-aware router;
- the ingress is ``llmops_serve_ingress:KeyedOpenAiIngress`` (roles/vllm_serve/files/serve), which checks the API
  key against the PBKDF2 digest that ``api_key_digest`` computes here: the config never holds the key itself.
"""

from __future__ import annotations

import hashlib

IMPORT_PATH = "ray.serve.llm:build_openai_app"
INGRESS_CLASS = "llmops_serve_ingress:KeyedOpenAiIngress"
# ray.serve.llm.request_router's public name of the prefix-aware router.
PREFIX_ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"
KEY_ITERATIONS = 100_000
# Serve marks a replica unhealthy after 3 failed checks in a row; a dead engine fails at once, so the period decides
# how long requests still reach it (measured: about 20 s at Serve LLM's 10 s). Its timeout (30 s by default) can pass
# while a busy engine answers slowly; a replica that fails it is restarted, minutes of reloading for a large model.
HEALTH_CHECK_PERIOD_S = 5
HEALTH_CHECK_TIMEOUT_S = 120
# Requests in flight get this long to finish when Serve stops a replica (scale-down, a new config).
GRACEFUL_SHUTDOWN_TIMEOUT_S = 60


class ServeLlmError(ValueError):
    """Settings that cannot make a Serve LLM application; names them and the fix."""


def llm_deployment_name(served_model_name):
    """The name Ray Serve LLM gives the deployment of a model's replicas (``LLMServer:<model id>``)."""
    return f"LLMServer:{served_model_name}"


def api_key_digest(key, application):
    """``{"salt", "iterations", "digest"}``: the PBKDF2-SHA256 digest the ingress checks keys against.

    The salt derives from the application's name, so the same key gives the same config on every run (a re-run
    changes nothing) while the digest of one key differs between applications.
    """
    if not key:
        raise ServeLlmError("The API key is empty; the Serve application is never deployed without one.")
    salt = hashlib.sha256(f"llmops.ray_vllm serve {application}".encode()).digest()[:16]
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, KEY_ITERATIONS)
    return {"salt": salt.hex(), "iterations": KEY_ITERATIONS, "digest": digest.hex()}


def engine_kwargs(effective):
    """vLLM's engine arguments of one replica, from the effective settings (those of the single-engine path)."""
    kwargs = {
        "tensor_parallel_size": effective["tensor_parallel_size"],
        "pipeline_parallel_size": effective["pipeline_parallel_size"],
        "dtype": effective["dtype"],
        "enforce_eager": bool(effective["enforce_eager"]),
    }
    if effective.get("max_model_len") is not None:
        kwargs["max_model_len"] = int(effective["max_model_len"])
    if effective["device"] == "gpu" and effective.get("gpu_memory_utilization") is not None:
        kwargs["gpu_memory_utilization"] = float(effective["gpu_memory_utilization"])
    if effective.get("kv_cache_dtype", "auto") != "auto":
        kwargs["kv_cache_dtype"] = effective["kv_cache_dtype"]
    if effective.get("quantization"):
        kwargs["quantization"] = effective["quantization"]
    return kwargs


def deployment_config(plan):
    """The replicas' deployment options that stay the same whatever their number: the router and the actor's CPU.

    They are part of the LLM config the builder binds, so a change restarts every replica.
    """
    serve = plan["serve"]
    return {
        # Ray's default imbalanced_threshold is infinite: requests that share a prefix (every chat template's
        # system prompt) would all stay on one replica. Past target_ongoing_requests of difference between two
        # replicas' queues, the shorter queue wins over the prefix.
        "request_router_config": {
            "request_router_class": PREFIX_ROUTER,
            "request_router_kwargs": {"imbalanced_threshold": int(serve["target_ongoing_requests"])},
        },
        # The replica actor's own CPU is the first bundle's: no extra logical CPU beside the placement group.
        "ray_actor_options": {"num_cpus": 0},
    }


def scaling_options(deployment, plan, overrides=None):
    """The deployment's entry of the application's ``deployments`` list: its replicas (or autoscaling range) and
    request limits. Serve applies a change of these in place, adding or stopping replicas while the others serve;
    in the builder's arguments they would give the deployment a new version and restart every replica.

    A fixed count is an autoscaling range pinned to it (min = max = N), not ``num_replicas``: Ray 2.60's application
    code version hashes which deployments have an autoscaling_config (serve/_private/deploy_utils.py,
    get_app_code_version), so going from ``num_replicas`` to a range restarted every replica. Bounds apply at once,
    so a pinned range starts or stops replicas as promptly as ``num_replicas`` does."""
    options = {
        "name": deployment,
        "max_ongoing_requests": int(plan["serve"]["max_ongoing_requests"]),
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_TIMEOUT_S,
    }
    scaling = plan.get("autoscaling")
    low, high = (scaling["min_replicas"], scaling["max_replicas"]) if scaling else (plan["replicas"],) * 2
    options["autoscaling_config"] = {
        "min_replicas": int(low),
        "initial_replicas": int(low),
        "max_replicas": int(high),
        "target_ongoing_requests": plan["serve"]["target_ongoing_requests"],
        **((overrides or {}) if scaling else {}),
    }
    return options


def expected_replicas(effective, plan):
    """serve_status's ``replicas``: the LLM deployment's replicas that must run (autoscaling: the minimum)."""
    scaling = plan.get("autoscaling")
    wanted = scaling["min_replicas"] if scaling else plan["replicas"]
    return {llm_deployment_name(effective["served_model_name"]): int(wanted)}


def serve_llm_application(effective, plan, key_digest, options=None):
    """The serve_app spec (name, route_prefix, import_path, args) of the plan's replicas.

    ``options``: ``name`` (the application's, default ``llm``), ``autoscaling`` (extra autoscaling_config keys such
    as ``downscale_delay_s``).
    """
    options = options or {}
    placement = plan.get("placement_group")
    if not placement or not plan.get("serve"):
        raise ServeLlmError(
            "The plan has no placement_group or serve keys: it was made by a deployment_plan without replicas. Plan "
            "again with this collection's deployment_plan."
        )
    llm_config = {
        "model_loading_config": {"model_id": effective["served_model_name"], "model_source": effective["model"]},
        "accelerator_config": {"kind": "cpu" if effective["device"] == "cpu" else "gpu"},
        "engine_kwargs": engine_kwargs(effective),
        "placement_group_config": {"bundles": placement["bundles"], "strategy": placement["strategy"]},
        "deployment_config": deployment_config(plan),
    }
    if effective.get("env"):
        llm_config["runtime_env"] = {"env_vars": {key: str(value) for key, value in effective["env"].items()}}
    return {
        "name": options.get("name") or "llm",
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "deployments": [
            scaling_options(llm_deployment_name(effective["served_model_name"]), plan, options.get("autoscaling"))
        ],
        "args": {
            "llm_configs": [llm_config],
            "ingress_cls_config": {
                "ingress_cls": INGRESS_CLASS,
                "ingress_extra_kwargs": {"api_key_digest": key_digest},
            },
            # The ingress only routes: without a CPU of its own it never waits for one the replicas hold.
            "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
        },
    }
