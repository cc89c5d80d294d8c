"""make bench's pure parts that a run of make bench alone would catch broken: the floor's vLLM command taken from
the deployed Ray job (tests/bench/deployed_command.py), and bench_scale's parse and planner timing at a few nodes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import (
    job_entrypoint,
    server_args,
    server_command,
    serving_settings,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import deployed_command  # noqa: E402

VENV = "/work/main/.venv"
KEY_FILE = "/work/main/.build/local/vllm-api-key"
MODEL = "/work/main/.build/local/models/SmolLM2-135M-Instruct"
# The Ray job vllm as the Jobs API listed it after `site.yml -i inventories/local` with make bench's -e (its port
# 38601), recorded by bench_local.reference_deploy (.build/bench/reference-vllm-job.json); fields the bench does not
# read left out.
RECORDED_JOB = {
    "type": "SUBMISSION",
    "status": "RUNNING",
    "submission_id": "vllm-450d604ebb02-1796634407",
    "entrypoint": (
        'bash -c \'export VLLM_API_KEY="$(cat /work/main/.build/local/vllm-api-key)"; exec '
        "/work/main/.venv/bin/python -m vllm.entrypoints.openai.api_server --model "
        "/work/main/.build/local/models/SmolLM2-135M-Instruct --served-model-name smollm2-135m-instruct --host "
        "127.0.0.1 --port 38601 --tensor-parallel-size 1 --pipeline-parallel-size 1 --distributed-executor-backend "
        "uni --dtype float32 --max-model-len 2048 --enforce-eager'"
    ),
    "runtime_env": {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
    "metadata": {
        "llmops.ray_vllm/config-hash": "450d604ebb027b86c49d41ca4846598eff50a395285e8b951adceb02e21d5858",
        "llmops.ray_vllm/name": "vllm",
        "served_model_name": "smollm2-135m-instruct",
    },
}
RECORDED_ARGV = [
    f"{VENV}/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL,
    "--served-model-name", "smollm2-135m-instruct", "--host", "127.0.0.1", "--port", "38601",
    "--tensor-parallel-size", "1", "--pipeline-parallel-size", "1", "--distributed-executor-backend", "uni",
    "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
]  # fmt: skip


def local_settings(plan=None, **changes):
    """The role's effective settings for inventories/local on CPU (roles/vllm_serve/tasks/settings.yml's inputs)."""
    requested = {
        "tensor_parallel_size": None, "pipeline_parallel_size": None, "max_model_len": 2048,
        "gpu_memory_utilization": None, "cpu_kvcache_space_gib": 1, "device": "cpu", "dtype": "float32",
        "executor_backend": "auto", "enforce_eager": "auto", "model": MODEL,
        "served_model_name": "smollm2-135m-instruct", "host": "127.0.0.1", "port": 38601, "middleware": None,
        "extra_args": [], "env": {}, "tls": None,
    }  # fmt: skip
    requested.update(changes)
    return serving_settings(requested, plan or {"device": "cpu"})


def deployed_job(effective, venv=VENV):
    """The Ray job vllm_serve submits for ``effective``, as hosts_job.yml builds it with the role's own functions."""
    command, args = server_command(effective, venv), server_args(effective)
    return {
        "submission_id": "vllm-test",
        "entrypoint": job_entrypoint(command, args, KEY_FILE),
        "runtime_env": {"env_vars": effective["env"]},
    }


def test_the_recorded_job_gives_the_floor_its_exact_command_and_environment():
    server = deployed_command.server_start(RECORDED_JOB)
    assert server == {"argv": RECORDED_ARGV, "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "api_key_file": KEY_FILE}
    argv, env = deployed_command.by_hand(server, "the-key")
    # Nothing differs, the port included: the floor and the deploy never run at the same time.
    assert argv == RECORDED_ARGV
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_API_KEY": "the-key"}
    assert deployed_command.option(argv, "--port") == "38601"
    assert deployed_command.option(argv, "--no-such-flag") is None


def test_the_role_builds_the_recorded_command_today():
    """The role's command builder, fed inventories/local's settings, still makes the recorded entrypoint: when it
    changes, this names the change (the bench itself follows it, reading the deployed job)."""
    assert deployed_command.server_start(deployed_job(local_settings())) == deployed_command.server_start(RECORDED_JOB)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"extra_args": ["--seed", "7", "--chat-template", "it's {{ messages }}"]},
        {"port": 8000, "max_model_len": None},
    ],
    ids=["local", "extra args with quotes", "other port, no max len"],
)
def test_whatever_the_role_builds_the_floor_runs(changes):
    effective = local_settings(**changes)
    server = deployed_command.server_start(deployed_job(effective))
    assert server["argv"] == server_command(effective, VENV) + server_args(effective)
    assert server["env"] == effective["env"] and server["api_key_file"] == KEY_FILE


def test_a_gpu_command_round_trips_too():
    effective = local_settings({"device": "gpu"}, device="gpu", dtype="auto", cpu_kvcache_space_gib=None)
    server = deployed_command.server_start(deployed_job(effective))
    assert server["argv"][:3] == [f"{VENV}/bin/vllm", "serve", MODEL]
    assert server["env"] == {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "1"}


@pytest.mark.parametrize(
    "entrypoint",
    [
        "python -m vllm.entrypoints.openai.api_server --model m",
        "bash -c 'exec python -m vllm.entrypoints.openai.api_server'",
        "bash -c 'export VLLM_API_KEY=\"$(cat /k)\"; exec '",
        "",
    ],
)
def test_an_entrypoint_of_another_shape_is_refused_by_name(entrypoint):
    with pytest.raises(deployed_command.EntrypointShapeError, match="deployed_command.py|API key file"):
        deployed_command.server_start({"submission_id": "vllm-x", "entrypoint": entrypoint})


def test_the_scale_timing_runs_at_a_few_nodes():
    import bench_scale

    rows = bench_scale.parse_timing(node_counts=(2, 10), min_seconds=0, calls=2)
    assert [what for what, _timings in rows][:2] == [
        "`ray status -v` text: parse_status_text",
        "ray_status gate on dashboard JSON",
    ]
    assert rows[2][0].startswith("deployment_plan: build_plan") and "best of 2" in rows[2][0]
    for _what, timings in rows:
        assert sorted(timings) == [2, 10]
        for seconds, calls in timings.values():
            assert seconds > 0 and calls >= 2
