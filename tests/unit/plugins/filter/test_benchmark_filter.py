# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The benchmark filters hand their arguments to _benchmark's functions, on the recorded bench serve outputs
(tests/fixtures/vllm/bench). Here, not beside _benchmark's own tests: ansible-test runs tests/unit/plugins/module_utils
where only ansible.module_utils can be imported, and a filter imports the controller's plugin_utils."""

from __future__ import annotations

import os

from ansible_collections.llmops.ray_vllm.plugins.filter.benchmark import FilterModule
from ansible_collections.llmops.ray_vllm.plugins.module_utils import _benchmark as benchmark

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "vllm", "bench")


def read(name):
    with open(os.path.join(BENCH, name), encoding="utf-8") as handle:
        return handle.read()


def test_the_filters_are_the_functions():
    filters = FilterModule().filters()
    ok_output = read("ok-8x2.stdout.txt")
    summary = filters["benchmark_summary"](ok_output)
    assert filters["benchmark_table"](summary) == benchmark.table_lines(summary)
    refused = filters["benchmark_summary"](read("unauthorized-4x2.stdout.txt"))
    assert filters["benchmark_problems"](refused, "4", "0") == []
    assert len(filters["benchmark_problems"](refused)) == 1
