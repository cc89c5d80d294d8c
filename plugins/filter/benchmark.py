# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that read vLLM's bench serve output for roles/benchmark (docs: benchmark_summary.yml, benchmark_table.yml,
benchmark_problems.yml)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._benchmark import problems, summarize, table_lines


def _benchmark_problems(summary, max_failed=0, rc=0, where="the endpoint"):
    return problems(summary, int(max_failed), int(rc), where)


class FilterModule:
    def filters(self):
        return {
            "benchmark_summary": summarize,
            "benchmark_table": table_lines,
            "benchmark_problems": _benchmark_problems,
        }
