# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that read vLLM's bench serve output for roles/benchmark (docs: benchmark_summary.yml, benchmark_table.yml,
benchmark_problems.yml). Their module_utils are imported on first use (plugin_utils/_lazy_import.py says why)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.plugin_utils._lazy_import import lazy


def _benchmark_problems(summary, max_failed=0, rc=0, where="the endpoint"):
    return lazy("_benchmark", "problems")(summary, int(max_failed), int(rc), where)


class FilterModule:
    def filters(self):
        return {
            "benchmark_summary": lazy("_benchmark", "summarize"),
            "benchmark_table": lazy("_benchmark", "table_lines"),
            "benchmark_problems": _benchmark_problems,
        }
