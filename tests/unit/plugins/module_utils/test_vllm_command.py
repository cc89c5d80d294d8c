"""vLLM's settings and command line from the plan and the role's variables (_vllm_command)."""

from __future__ import annotations

import shlex

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import (
    ServingSettingsError,
    job_entrypoint,
    server_args,
    server_command,
    serving_settings,
)


def plan(device="GPU", tp=2, pp=1, max_model_len=8096, dtype="bfloat16", env=None, **extra):
    vllm_args = {
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": 0.9,
        "dtype": dtype,
        "kv_cache_dtype": "auto",
        "quantization": None,
    }
    vllm_args.update(extra)
    return {"device": device, "vllm_args": vllm_args, "env": env or {}}


def settings(**overrides):
    base = {
        "tensor_parallel_size": None,
        "pipeline_parallel_size": None,
        "max_model_len": None,
        "gpu_memory_utilization": None,
        "cpu_kvcache_space_gib": None,
        "device": "auto",
        "dtype": "auto",
        "executor_backend": "auto",
        "enforce_eager": "auto",
        "model": "/models/m",
        "served_model_name": "m",
        "host": "0.0.0.0",
        "port": 8000,
        "middleware": None,
        "extra_args": [],
        "env": {},
    }
    base.update(overrides)
    return base


def test_the_plan_decides_what_the_user_left_unset():
    effective = serving_settings(settings(), plan(tp=2, pp=3))
    assert (effective["tensor_parallel_size"], effective["pipeline_parallel_size"]) == (2, 3)
    assert effective["max_model_len"] == 8096 and effective["gpu_memory_utilization"] == 0.9
    assert (effective["device"], effective["executor_backend"], effective["dtype"]) == ("gpu", "ray", "bfloat16")
    assert effective["enforce_eager"] is False
    args = server_args(effective)
    text = " ".join(args)
    # vllm serve takes the model first, positionally (--model is deprecated there in 0.32).
    assert args[0] == "/models/m"
    for part in (
        "--served-model-name m",
        "--tensor-parallel-size 2",
        "--pipeline-parallel-size 3",
        "--distributed-executor-backend ray",
        "--dtype bfloat16",
        "--max-model-len 8096",
        "--gpu-memory-utilization 0.9",
    ):
        assert part in text, part
    assert "--enforce-eager" not in args and "--kv-cache-dtype" not in args and "--quantization" not in args


def test_a_user_value_that_agrees_with_the_plan_is_taken():
    effective = serving_settings(settings(tensor_parallel_size=2, gpu_memory_utilization=0.9), plan(tp=2))
    assert effective["tensor_parallel_size"] == 2


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"tensor_parallel_size": 4}, "vllm_serve_tensor_parallel_size=4 conflicts with the deployment plan"),
        ({"pipeline_parallel_size": 2}, "vllm_serve_pipeline_parallel_size=2 conflicts"),
        ({"max_model_len": 4096}, "vllm_serve_max_model_len=4096 conflicts"),
        ({"gpu_memory_utilization": 0.8}, "vllm_serve_gpu_memory_utilization=0.8 conflicts"),
        (
            {"device": "cpu"},
            "vllm_serve_device=cpu conflicts with the deployment plan (vllm_serve_plan), which has device=gpu",
        ),
        (
            {"dtype": "float16"},
            "vllm_serve_dtype=float16 conflicts with the deployment plan (vllm_serve_plan), which has",
        ),
    ],
)
def test_a_user_value_that_contradicts_the_plan_is_refused_by_name(override, fragment):
    with pytest.raises(ServingSettingsError) as error:
        serving_settings(settings(**override), plan(tp=2))
    assert fragment in str(error.value)
    assert "vllm_serve_plan" in str(error.value)


def test_without_a_plan_the_variables_alone_decide_and_null_is_left_to_vllm():
    effective = serving_settings(settings(tensor_parallel_size=4))
    args = server_args(effective)
    assert effective["tensor_parallel_size"] == 4 and effective["pipeline_parallel_size"] == 1
    assert "--max-model-len" not in args and "--gpu-memory-utilization" not in args
    assert "--dtype auto" in " ".join(args)


def test_cpu_plans_of_one_process_serve_with_uni_eager_and_the_planned_kv_cache():
    effective = serving_settings(
        settings(host="127.0.0.1"), plan(device="CPU", tp=1, dtype="float32", env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    )
    assert (effective["device"], effective["executor_backend"], effective["enforce_eager"]) == ("cpu", "uni", True)
    assert effective["env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    args = server_args(effective)
    assert "--enforce-eager" in args and "--gpu-memory-utilization" not in args
    assert "--dtype float32" in " ".join(args)
    # The module form of the CPU wheel reads --model only.
    assert args[:2] == ["--model", "/models/m"]


def test_the_cpu_kv_cache_defaults_to_4_gib_without_a_plan_and_user_env_is_added():
    effective = serving_settings(settings(device="cpu", env={"OMP_NUM_THREADS": "2"}))
    assert effective["env"] == {"VLLM_CPU_KVCACHE_SPACE": "4", "OMP_NUM_THREADS": "2"}


def test_a_cpu_kv_cache_that_contradicts_the_plan_is_refused():
    with pytest.raises(ServingSettingsError, match="vllm_serve_cpu_kvcache_space_gib=2 conflicts"):
        serving_settings(settings(cpu_kvcache_space_gib=2), plan(device="CPU", env={"VLLM_CPU_KVCACHE_SPACE": "1"}))


def test_the_ray_executor_is_refused_on_cpu():
    with pytest.raises(ServingSettingsError, match="vllm_serve_executor_backend=ray does not work on CPU"):
        serving_settings(settings(executor_backend="ray"), plan(device="CPU"))


def test_the_plans_quantization_kv_dtype_middleware_and_extra_args_reach_the_command_line():
    effective = serving_settings(
        settings(middleware="mod.Cls", extra_args=["--seed", 3], enforce_eager="true"),
        plan(quantization="fp8", kv_cache_dtype="fp8_e4m3"),
    )
    args = server_args(effective)
    text = " ".join(args)
    assert "--quantization fp8" in text and "--kv-cache-dtype fp8_e4m3" in text
    assert "--middleware mod.Cls" in text and args[-2:] == ["--seed", "3"] and "--enforce-eager" in args


def test_the_job_entrypoint_reads_the_key_inside_the_job_and_quotes_every_argument():
    entry = job_entrypoint(["/venv/bin/vllm", "serve"], ["--model", "/m dir/x", "--port", "8000"], "/keys/api key")
    assert entry.startswith("bash -c ")
    script = shlex.split(entry)[2]
    assert script.startswith("export VLLM_API_KEY=\"$(cat '/keys/api key')\"; exec /venv/bin/vllm serve ")
    assert script.endswith("--model '/m dir/x' --port 8000")


def test_gpus_run_the_vllm_script_and_cpus_the_module_form():
    gpu = serving_settings(settings(), plan())
    cpu = serving_settings(settings(), plan(device="CPU"))
    assert server_command(gpu) == ["vllm", "serve"]
    assert server_command(gpu, "/opt/venv/") == ["/opt/venv/bin/vllm", "serve"]
    # The CPU wheel's vllm console script fails; its module runs.
    assert server_command(cpu) == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server_command(cpu, "/opt/venv") == ["/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]


def test_the_ray_executor_is_pinned_to_vllms_v2_backend_and_a_user_may_override_it():
    assert serving_settings(settings(), plan())["env"] == {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "1"}
    mp = serving_settings(settings(executor_backend="mp"), plan())
    assert "VLLM_USE_RAY_V2_EXECUTOR_BACKEND" not in mp["env"]
    mine = serving_settings(settings(env={"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"}), plan())
    assert mine["env"]["VLLM_USE_RAY_V2_EXECUTOR_BACKEND"] == "0"


def test_a_users_cpu_device_is_taken_with_a_cpu_plan_and_refused_with_a_gpu_plan_naming_ray_vllm_device():
    cpu_plan = plan(device="CPU", tp=1, dtype="float32", env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    effective = serving_settings(settings(device="cpu"), cpu_plan)
    assert (effective["device"], effective["executor_backend"]) == ("cpu", "uni")
    with pytest.raises(ServingSettingsError) as error:
        serving_settings(settings(device="cpu"), plan())
    assert str(error.value) == (
        "vllm_serve_device=cpu conflicts with the deployment plan (vllm_serve_plan), which has device=gpu. The plan "
        "was made without that value; fix: leave vllm_serve_device at its default to take the plan's, or plan on "
        "that device: set ray_vllm_device: cpu (site.yml hands it to llmops.ray_vllm.deployment_plan as its device "
        "option)."
    )
    with pytest.raises(ServingSettingsError, match="set ray_vllm_device: gpu"):
        serving_settings(settings(device="gpu"), cpu_plan)


def test_a_cpu_plan_on_kubernetes_runs_the_module_form_with_uni_eager_and_its_kv_cache():
    """What the driver pod execs for a CPU plan (no venv in the image: python3 from its PATH)."""
    effective = serving_settings(
        settings(middleware="llmops_api_key_header.ApiKeyHeaderMiddleware", cpu_kvcache_space_gib=1),
        plan(device="CPU", tp=1, dtype="float32", env={"VLLM_CPU_KVCACHE_SPACE": "1"}),
    )
    command = server_command(effective) + server_args(effective)
    assert command[:5] == ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/m"]
    text = " ".join(command)
    assert "--distributed-executor-backend uni" in text and "--enforce-eager" in command
    assert "--gpu-memory-utilization" not in text
    assert effective["env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_tls_adds_the_certificate_flags_and_reload():
    tls = {"certfile": "/etc/llmops/tls/server.crt", "keyfile": "/etc/llmops/tls/server.key"}
    effective = serving_settings(settings(tls=tls), plan())
    assert effective["tls"] == tls
    text = " ".join(server_args(effective))
    expected = "--ssl-certfile /etc/llmops/tls/server.crt --ssl-keyfile /etc/llmops/tls/server.key --enable-ssl-refresh"
    assert expected in text
    assert "--ssl" not in " ".join(server_args(serving_settings(settings(tls=None), plan())))


def test_tls_needs_both_files():
    with pytest.raises(ServingSettingsError, match="vllm_serve_tls_enabled=true needs both a certificate and its key"):
        serving_settings(settings(tls={"certfile": "/c", "keyfile": ""}), plan())


def test_tls_is_refused_for_a_serve_llm_plan():
    serve_plan = dict(plan(), serve={"engine": "serve_llm"})
    with pytest.raises(ServingSettingsError) as refused:
        serving_settings(settings(tls={"certfile": "/c", "keyfile": "/k"}), serve_plan)
    assert "only supported for one vLLM engine" in str(refused.value)
    assert "vllm_serve_plan" in str(refused.value) and "vllm_serve_ingress_tls_secret" in str(refused.value)


def test_cpu_plans_across_processes_keep_mp_and_uni_is_refused_for_them():
    cpu_plan = plan(device="CPU", tp=3, dtype="float32", env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    assert serving_settings(settings(), cpu_plan)["executor_backend"] == "mp"
    with pytest.raises(ServingSettingsError) as error:
        serving_settings(settings(executor_backend="uni"), cpu_plan)
    assert str(error.value) == (
        "vllm_serve_executor_backend=uni runs the model in one process, but the plan's tensor x pipeline parallel "
        "size is 3. Use auto, or mp (CPU) or ray (GPUs)."
    )
