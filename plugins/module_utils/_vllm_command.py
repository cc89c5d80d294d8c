# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""vLLM's server settings and command line: the one place they are worked out, for both platforms.

The deployment plan's ``vllm_args`` (tensor/pipeline parallel size, max_model_len, GPU memory share, dtype, KV cache
dtype, quantization) are the default; a value the user set wins when the plan agrees with it, and is refused, by its
variable's name, when it does not, so a user's value is never dropped without a word.
"""

from __future__ import annotations

import shlex

# Settings the plan decides (keys of its vllm_args) and a user may also set.
PLANNED_SETTINGS = ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization")
# The settings site.yml hands the planner as its options (plugins/module_utils/_plan_inputs.py).
PLAN_INPUTS = PLANNED_SETTINGS + ("cpu_kvcache_space_gib", "dtype")
# vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB; 4 is what the role used before plans sized it.
DEFAULT_CPU_KVCACHE_SPACE_GIB = 4
DEVICES = ("auto", "gpu", "cpu")
BACKENDS = ("auto", "ray", "mp", "uni")


class ServingSettingsError(ValueError):
    """A setting that cannot work; the message names the variable, what was seen and the fix."""


def _same(left, right):
    if isinstance(left, float) or isinstance(right, float):
        return abs(float(left) - float(right)) < 1e-9
    try:
        return int(left) == int(right)
    except (TypeError, ValueError):
        return str(left) == str(right)


def _plan_hint(key, user_value):
    """How to get the plan to agree with a user's value, if site.yml can hand it over."""
    if key in PLAN_INPUTS:
        return (
            ", or pass it to the plan (site.yml hands it to llmops.ray_vllm.deployment_plan, which then checks it "
            "against the model and the GPUs)"
        )
    if key == "device":
        return (
            f", or plan on that device: set ray_vllm_device: {user_value} (site.yml hands it to "
            "llmops.ray_vllm.deployment_plan as its device option)"
        )
    return ""


def _planned_value(key, user_value, planned, names):
    """The user's value if set (after checking it against the plan's), else the plan's, else None."""
    if user_value is None:
        return planned
    if planned is not None and not _same(user_value, planned):
        hint = _plan_hint(key, user_value)
        raise ServingSettingsError(
            f"{names(key)}={user_value} conflicts with the deployment plan ({names('plan')}), which has "
            f"{key}={planned}. The plan was made without that value; fix: leave {names(key)} at its default to take "
            f"the plan's{hint}."
        )
    return user_value


def _device(settings, plan, names):
    device = settings.get("device") or "auto"
    if device not in DEVICES:
        raise ServingSettingsError(f"{names('device')}={device!r} must be one of auto, gpu, cpu.")
    planned = str(plan.get("device") or "").lower() or None
    return _planned_value("device", None if device == "auto" else device, planned, names) or "gpu"


def _dtype(settings, plan_args, names):
    wanted = settings.get("dtype") or "auto"
    return _planned_value("dtype", None if wanted == "auto" else wanted, plan_args.get("dtype"), names) or "auto"


def _backend(settings, device, names, world_size=1):
    """auto: Ray across GPUs; on CPU, uni for one process (TP=PP=1: no worker process to spawn, so the server is up
    seconds sooner) and mp across several."""
    backend = settings.get("executor_backend") or "auto"
    if backend not in BACKENDS:
        raise ServingSettingsError(f"{names('executor_backend')}={backend!r} must be one of auto, ray, mp, uni.")
    if backend == "auto":
        if device != "cpu":
            return "ray"
        return "uni" if world_size == 1 else "mp"
    if backend == "ray" and device == "cpu":
        raise ServingSettingsError(
            f'{names("executor_backend")}=ray does not work on CPU (vLLM says "current platform cpu does not '
            'support ray"). Use auto or mp.'
        )
    if backend == "uni" and world_size != 1:
        raise ServingSettingsError(
            f"{names('executor_backend')}=uni runs the model in one process, but the plan's tensor x pipeline "
            f"parallel size is {world_size}. Use auto, or mp (CPU) or ray (GPUs)."
        )
    return backend


def _enforce_eager(settings, device):
    value = str(settings.get("enforce_eager", "auto")).lower()
    if value == "auto":
        # Compiling on CPU cost minutes and, with bf16, gave garbage text.
        return device == "cpu"
    return value in ("true", "yes", "1", "on")


def _engine_env(settings, plan, device, names):
    """What vLLM reads from the environment: the Ray executor's version on GPUs, the KV cache size on CPU."""
    if device != "cpu":
        # vLLM 0.32 defaults to RayExecutorV2 (vllm/envs.py); pinned, so a driver without a GPU keeps working if a
        # later default changes (the legacy executor needs a GPU on the driver).
        return {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "1"} if _backend(settings, device, names) == "ray" else {}
    planned = (plan.get("env") or {}).get("VLLM_CPU_KVCACHE_SPACE")
    space = _planned_value(
        "cpu_kvcache_space_gib",
        settings.get("cpu_kvcache_space_gib"),
        int(planned) if planned not in (None, "") else None,
        names,
    )
    return {"VLLM_CPU_KVCACHE_SPACE": str(space if space is not None else DEFAULT_CPU_KVCACHE_SPACE_GIB)}


def _tls(tls, engine, names):
    """``{certfile, keyfile}`` when the server serves HTTPS, else None; refused for a Serve LLM application.

    vLLM 0.32's OpenAI server takes --ssl-certfile/--ssl-keyfile itself. Several replicas are served by Ray Serve's
    HTTP proxy instead, which (Ray 2.60's HTTPOptions ssl_certfile/ssl_keyfile) would need the files on every node
    its proxies run on; the collection does not place them there, so it says so rather than serve plain HTTP.
    """
    if not tls or not (tls.get("certfile") or tls.get("keyfile")):
        return None
    if not (tls.get("certfile") and tls.get("keyfile")):
        raise ServingSettingsError(
            f"{names('tls_enabled')}=true needs both a certificate and its key (seen certfile={tls.get('certfile')!r}, "
            f"keyfile={tls.get('keyfile')!r}); fix: set both."
        )
    if engine == "serve_llm":
        raise ServingSettingsError(
            f"{names('tls_enabled')}=true is only supported for one vLLM engine (the plan's serve.engine vllm); "
            f"this plan ({names('plan')}) serves several replicas with Ray Serve LLM (serve.engine serve_llm), whose "
            "HTTP proxy would need the certificate and key on every Ray node, which the collection does not place. "
            "Fix: set "
            f"{names('tls_enabled')}=false and terminate TLS in front of Serve (an Ingress with "
            "vllm_serve_ingress_tls_secret, or a load balancer), or plan a single engine (the plan's serve.engine is "
            "vllm when one replica holds every GPU and neither ray_vllm_replicas nor autoscaling is set)."
        )
    return {"certfile": str(tls["certfile"]), "keyfile": str(tls["keyfile"])}


def namer(prefix, plan_variable):
    """How messages name a setting: its variable (``prefix`` + setting); ``plan`` is the plan's own variable."""

    def name(key):
        return plan_variable if key == "plan" else prefix + key

    return name


def serving_settings(settings, plan=None, prefix="vllm_serve_", plan_variable="vllm_serve_plan"):
    """The server's effective settings from the role's ``settings`` (keys without the prefix) and the plan.

    ``settings`` holds tensor_parallel_size, pipeline_parallel_size, max_model_len, gpu_memory_utilization,
    cpu_kvcache_space_gib (None: from the plan), device (auto: from the plan, else gpu), dtype, executor_backend,
    enforce_eager, model, served_model_name, host, port, middleware, extra_args, env and tls (``{certfile, keyfile}``
    as the server sees the files, or None for plain HTTP).
    """
    plan = plan or {}
    plan_args = plan.get("vllm_args") or {}
    names = namer(prefix, plan_variable)
    device = _device(settings, plan, names)
    effective = {key: _planned_value(key, settings.get(key), plan_args.get(key), names) for key in PLANNED_SETTINGS}
    effective["tensor_parallel_size"] = int(effective["tensor_parallel_size"] or 1)
    effective["pipeline_parallel_size"] = int(effective["pipeline_parallel_size"] or 1)
    effective.update(
        {
            "device": device,
            "dtype": _dtype(settings, plan_args, names),
            "kv_cache_dtype": plan_args.get("kv_cache_dtype") or "auto",
            "quantization": plan_args.get("quantization"),
            "executor_backend": _backend(
                settings, device, names, effective["tensor_parallel_size"] * effective["pipeline_parallel_size"]
            ),
            "enforce_eager": _enforce_eager(settings, device),
            "env": dict(_engine_env(settings, plan, device, names), **(settings.get("env") or {})),
        }
    )
    # One engine as a Ray job (or Deployment), or the plan's replicas as a Ray Serve LLM application.
    effective["engine"] = (plan.get("serve") or {}).get("engine") or "vllm"
    for key in ("model", "served_model_name", "host", "port", "middleware"):
        effective[key] = settings.get(key)
    effective["tls"] = _tls(settings.get("tls"), effective["engine"], names)
    effective["extra_args"] = [str(arg) for arg in settings.get("extra_args") or []]
    return effective


def server_args(effective):
    """vLLM's OpenAI server arguments for the effective settings, as a list of strings.

    ``vllm serve`` (GPUs) takes the model as its first, positional argument (vLLM 0.32 deprecates its --model); the
    module form (CPU) only reads --model.
    """
    model = [effective["model"]] if effective["device"] != "cpu" else ["--model", effective["model"]]
    args = model + [
        "--served-model-name", effective["served_model_name"],
        "--host", effective["host"],
        "--port", str(effective["port"]),
        "--tensor-parallel-size", str(effective["tensor_parallel_size"]),
        "--pipeline-parallel-size", str(effective["pipeline_parallel_size"]),
        "--distributed-executor-backend", effective["executor_backend"],
        "--dtype", effective["dtype"],
    ]  # fmt: skip
    if effective["max_model_len"] is not None:
        args += ["--max-model-len", str(int(effective["max_model_len"]))]
    if effective["device"] == "gpu" and effective["gpu_memory_utilization"] is not None:
        args += ["--gpu-memory-utilization", str(effective["gpu_memory_utilization"])]
    if effective["kv_cache_dtype"] != "auto":
        args += ["--kv-cache-dtype", effective["kv_cache_dtype"]]
    if effective["quantization"]:
        args += ["--quantization", effective["quantization"]]
    if effective["enforce_eager"]:
        args.append("--enforce-eager")
    if effective["middleware"]:
        args += ["--middleware", effective["middleware"]]
    if effective.get("tls"):
        # --enable-ssl-refresh: vLLM reloads the files when they change (a renewed certificate, a Secret update).
        args += [
            "--ssl-certfile", effective["tls"]["certfile"],
            "--ssl-keyfile", effective["tls"]["keyfile"],
            "--enable-ssl-refresh",
        ]  # fmt: skip
    return args + effective["extra_args"]


def server_command(effective, venv=None):
    """The program that runs vLLM's OpenAI server, as a list: ``vllm serve`` where the console script works (the GPU
    builds), the module form on CPU, whose wheel's ``vllm`` script fails. ``venv`` prefixes its bin directory."""
    prefix = (venv.rstrip("/") + "/bin/") if venv else ""
    if effective["device"] == "cpu":
        return [prefix + ("python" if venv else "python3"), "-m", "vllm.entrypoints.openai.api_server"]
    return [prefix + "vllm", "serve"]


def job_entrypoint(command, args, api_key_file):
    """The Ray job's entrypoint: read the API key from its file inside the job, then exec the server.

    The key never appears in the entrypoint, so Ray's job list and ``ps`` do not show it.
    """
    script = 'export VLLM_API_KEY="$(cat {})"; exec {}'.format(
        shlex.quote(api_key_file), " ".join(shlex.quote(arg) for arg in list(command) + list(args))
    )
    return "bash -c " + shlex.quote(script)
