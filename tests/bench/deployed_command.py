"""The vLLM server the collection really runs, as a command to start by hand: the floor's server in make bench.

The vllm_serve role submits the server as the Ray job named ``vllm`` (roles/vllm_serve/tasks/hosts_job.yml), its
entrypoint built by plugins/module_utils/_vllm_command.py: ``bash -c 'export VLLM_API_KEY="$(cat KEYFILE)"; exec
PROGRAM ARGS...'``, with the engine's environment (VLLM_CPU_KVCACHE_SPACE on CPU) in the job's runtime_env. Read
back from the Jobs API of a real deploy, that job gives the floor its program, flags and environment, so the floor
cannot drift from what the role runs. Pure functions here (unit-tested in tests/unit/test_bench_commands.py); the
reading is bench_local.deployed_vllm_job.
"""

from __future__ import annotations

import shlex

KEY_PREFIX = 'export VLLM_API_KEY="$(cat '
KEY_SUFFIX = ')"; exec '


class EntrypointShapeError(ValueError):
    """The job's entrypoint is not the shape job_entrypoint builds; the bench must learn the new one."""


def server_start(job):
    """``{"argv", "env", "api_key_file"}`` of the vLLM server that the Ray job ``job`` (a Jobs API entry) runs.

    ``argv`` is the program and its arguments exactly as the job execs them; ``env`` the job's runtime_env
    variables (the API key is not among them: the job reads it from ``api_key_file``).
    """
    entrypoint = job.get("entrypoint") or ""
    words = shlex.split(entrypoint)
    script = words[2] if len(words) == 3 and words[:2] == ["bash", "-c"] else ""
    head, exec_mark, command = script.partition(KEY_SUFFIX)
    if not (head.startswith(KEY_PREFIX) and exec_mark and command):
        raise EntrypointShapeError(
            f"the Ray job {job.get('submission_id')}'s entrypoint is not `bash -c '{KEY_PREFIX}KEYFILE{KEY_SUFFIX}"
            f"PROGRAM ARGS...'` as plugins/module_utils/_vllm_command.job_entrypoint builds it: {entrypoint!r}. "
            "Teach tests/bench/deployed_command.py the new shape."
        )
    key_file = shlex.split(head[len(KEY_PREFIX) :])
    if len(key_file) != 1:
        raise EntrypointShapeError(f"no single API key file in the entrypoint {entrypoint!r}")
    env_vars = (job.get("runtime_env") or {}).get("env_vars") or {}
    return {
        "argv": shlex.split(command),
        "env": {str(name): str(value) for name, value in env_vars.items()},
        "api_key_file": key_file[0],
    }


def by_hand(server, key):
    """``(argv, env additions)`` to start ``server`` (server_start's answer) by hand with the API key ``key``.

    The argv is the deployed one, unchanged: the same program, model, host and port. Nothing has to differ, since
    the floor's server and the deployed one never run at the same time (the bench tears the deploy down first) and
    the bench's probes and load address that one port. The key goes in as VLLM_API_KEY, which the job's entrypoint
    exports from its key file; ``key`` is that file's content, read beforehand so the timed start reads no file.
    """
    return list(server["argv"]), dict(server["env"], VLLM_API_KEY=key)


def option(argv, name):
    """The value after ``name`` in ``argv`` (``--port 8000``), or None."""
    for index, word in enumerate(argv[:-1]):
        if word == name:
            return argv[index + 1]
    return None
