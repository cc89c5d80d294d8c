# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""accelerator_facts' parsers and gate, on real outputs.

GPU: nvidia-smi of a real single-H200 host, /work/shared/fixtures/gpu/h200-1x (found by walking up to
``shared/fixtures``). CPU: /proc files and lscpu of the development VM, tests/fixtures/cpu (README there).
"""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _accelerator_facts as facts
from ansible_collections.llmops.ray_vllm.tests.unit.shared_fixtures import shared_fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
CPU_FIXTURES = os.path.join(HERE, "..", "..", "..", "fixtures", "cpu", "amd-epyc-2cpu-kvm")


H200 = os.path.join(shared_fixtures(), "gpu", "h200-1x")


def read(directory, name):
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise AssertionError(f"recorded fixture {path} is missing")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def lscpu_field(name):
    for line in read(CPU_FIXTURES, "lscpu.txt").splitlines():
        key, _sep, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"lscpu.txt has no {name!r}")


def xml_text(tag):
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", read(H200, "nvidia-smi-q.xml"))
    return match.group(1).strip()


class ReplayModule:
    """Stands in for AnsibleModule.run_command, answering the real nvidia-smi outputs recorded for each command."""

    def __init__(self, answers):
        self.answers = answers
        self.commands = []

    def run_command(self, argv):
        self.commands.append(list(argv))
        return self.answers[tuple(argv[1:])]


def h200_replay(plain_rc=0):
    return ReplayModule(
        {
            facts.QUERY_GPU_ARGS: (0, read(H200, "query-gpu.csv"), ""),
            (): (plain_rc, read(H200, "nvidia-smi.txt") if plain_rc == 0 else "", ""),
            ("-q", "-x"): (0, read(H200, "nvidia-smi-q.xml"), ""),
        }
    )


class TestNvidiaSmiParsers:
    def test_query_gpu_gives_one_h200_with_every_field(self):
        (gpu,) = facts.parse_query_gpu(read(H200, "query-gpu.csv"))
        assert set(gpu) == set(facts.GPU_KEYS)
        assert gpu["index"] == 0
        assert gpu["name"] == xml_text("product_name") == "NVIDIA H200"
        assert gpu["uuid"] == xml_text("uuid")
        assert gpu["pci_bus_id"] == "00000000:00:06.0"
        assert gpu["driver_version"] == xml_text("driver_version")
        assert gpu["persistence_mode"] == xml_text("persistence_mode") == "Enabled"
        assert gpu["mig_mode"] == xml_text("current_mig") == "Disabled"
        assert gpu["compute_capability"] == "9.0"
        assert (gpu["memory_total_mib"], gpu["memory_used_mib"], gpu["memory_free_mib"]) == (143771, 0, 143156)

    def test_memory_matches_the_other_recordings(self):
        (gpu,) = facts.parse_query_gpu(read(H200, "query-gpu.csv"))
        assert f"{gpu['memory_total_mib']} MiB" in read(H200, "query-gpu-header.csv")
        assert f"{gpu['memory_used_mib']}MiB / {gpu['memory_total_mib']}MiB" in read(H200, "nvidia-smi.txt")

    def test_output_of_another_query_is_refused(self):
        # A real CSV with 5 columns (and units): not the query this module runs.
        with pytest.raises(ValueError, match="expected 11 comma-separated values"):
            facts.parse_query_gpu(read(H200, "query-gpu-header.csv"))

    def test_header_gives_driver_and_cuda(self):
        assert facts.parse_smi_header(read(H200, "nvidia-smi.txt")) == ("580.159.04", "13.0")

    def test_xml_gives_driver_and_cuda(self):
        assert facts.parse_smi_xml(read(H200, "nvidia-smi-q.xml")) == ("580.159.04", "13.0")

    def test_not_an_nvidia_smi_banner(self):
        assert facts.parse_smi_header(read(H200, "query-gpu.csv")) == (None, None)
        assert facts.parse_smi_xml(read(H200, "nvidia-smi.txt")) == (None, None)

    def test_unavailable_values_become_none(self):
        # nvidia-smi's markers for values a GPU cannot give, as they appear in its CSV output.
        for marker in ("[N/A]", "[Not Supported]"):
            assert facts._value(f" {marker}") is None
        assert facts._int_or_none(None) is None


class TestReadGpus:
    def test_runs_the_query_then_the_banner(self):
        module = h200_replay()
        gpus, driver, cuda, absent = facts.read_gpus(module, "/usr/bin/nvidia-smi", None)
        assert module.commands == [["/usr/bin/nvidia-smi"] + list(facts.QUERY_GPU_ARGS), ["/usr/bin/nvidia-smi"]]
        assert module.commands[0][1] == "--query-gpu=" + ",".join(facts.QUERY_GPU_FIELDS)
        assert [gpu["name"] for gpu in gpus] == ["NVIDIA H200"]
        assert (driver, cuda, absent) == ("580.159.04", "13.0", None)

    def test_falls_back_to_the_xml_report_for_cuda(self):
        module = h200_replay(plain_rc=1)
        _gpus, driver, cuda, _absent = facts.read_gpus(module, "nvidia-smi", None)
        assert module.commands[-1] == ["nvidia-smi", "-q", "-x"]
        assert (driver, cuda) == ("580.159.04", "13.0")

    def test_missing_nvidia_smi(self):
        gpus, driver, cuda, absent = facts.read_gpus(ReplayModule({}), None, None)
        assert (gpus, driver, cuda) == ([], None, None)
        assert absent == "nvidia-smi is not installed (not found on PATH)"
        assert facts.read_gpus(ReplayModule({}), None, "/opt/x/nvidia-smi")[3].endswith(
            "(not found at /opt/x/nvidia-smi)"
        )


def h200_facts():
    module = h200_replay()
    collected, absent = facts.collect(
        module,
        "nvidia-smi",
        None,
        os.path.join(CPU_FIXTURES, "cpuinfo.txt"),
        os.path.join(CPU_FIXTURES, "meminfo.txt"),
        os.path.join(CPU_FIXTURES, "node-online.txt"),
    )
    return collected, absent


def no_gpu_facts():
    collected, absent = facts.collect(
        ReplayModule({}),
        None,
        None,
        os.path.join(CPU_FIXTURES, "cpuinfo.txt"),
        os.path.join(CPU_FIXTURES, "meminfo.txt"),
        os.path.join(CPU_FIXTURES, "node-online.txt"),
    )
    return collected, absent


def check(collected, absent, min_gpus=0, allow_cpu=False, min_driver_version=None, min_cuda_version=None):
    return facts.check_expectations(
        collected,
        host="node1",
        min_gpus=min_gpus,
        allow_cpu=allow_cpu,
        min_driver_version=min_driver_version,
        min_cuda_version=min_cuda_version,
        gpu_absent_reason=absent,
    )


class TestCpuFacts:
    def test_matches_lscpu(self):
        cpu = facts.cpu_facts(
            read(CPU_FIXTURES, "cpuinfo.txt"), read(CPU_FIXTURES, "meminfo.txt"), read(CPU_FIXTURES, "node-online.txt")
        )
        assert cpu["logical_cores"] == int(lscpu_field("CPU(s)")) == int(read(CPU_FIXTURES, "nproc.txt"))
        assert cpu["model_name"] == lscpu_field("Model name")
        assert cpu["vendor_id"] == lscpu_field("Vendor ID")
        assert cpu["numa_nodes"] == int(lscpu_field("NUMA node(s)"))
        lscpu_flags = set(lscpu_field("Flags").split())
        assert cpu["flags"] == {flag: flag in lscpu_flags for flag in facts.CPU_FLAGS_OF_INTEREST}

    def test_this_avx2_cpu_has_no_native_bf16(self):
        cpu = facts.cpu_facts(read(CPU_FIXTURES, "cpuinfo.txt"), read(CPU_FIXTURES, "meminfo.txt"))
        assert cpu["flags"]["avx2"] is True
        assert cpu["flags"]["avx512f"] is False
        assert cpu["bf16_supported"] is False
        assert cpu["numa_nodes"] is None  # not given

    def test_memory_in_mib(self):
        meminfo = facts.parse_meminfo(read(CPU_FIXTURES, "meminfo.txt"))
        assert meminfo["MemTotal"] == 24683656
        cpu = facts.cpu_facts(read(CPU_FIXTURES, "cpuinfo.txt"), read(CPU_FIXTURES, "meminfo.txt"))
        assert cpu["memory_total_mib"] == 24105
        assert cpu["memory_available_mib"] == meminfo["MemAvailable"] // 1024
        assert 0 < cpu["memory_available_mib"] <= cpu["memory_total_mib"]

    def test_kernel_lists(self):
        assert facts.count_cpu_list(read(CPU_FIXTURES, "node-online.txt")) == 1
        assert facts.count_cpu_list(lscpu_field("On-line CPU(s) list")) == 2
        assert facts.count_cpu_list(lscpu_field("NUMA node0 CPU(s)")) == 2


class TestVersions:
    @pytest.mark.parametrize(
        "version, minimum, expected",
        [
            ("580.159.04", "535.104.05", True),
            ("525.60", "535.104.05", False),
            ("535.104.05", "535.104.05", True),
            ("535.104", "535.104.05", False),
            ("13.0", "12.1", True),
            ("12.4", "12.4.0", True),
            ("12.10", "12.9", True),
        ],
    )
    def test_version_at_least(self, version, minimum, expected):
        assert facts.version_at_least(version, minimum) is expected

    @pytest.mark.parametrize("bad", ["", "12.x", "v550", "550..1"])
    def test_not_a_version(self, bad):
        with pytest.raises(ValueError):
            facts.version_tuple(bad)


class TestGate:
    def test_h200_summary(self):
        collected, absent = h200_facts()
        assert absent is None
        assert collected["gpu_count"] == 1
        assert collected["gpu_product"] == "NVIDIA H200"
        assert collected["gpu_memory_mib"] == 143771
        assert (collected["driver_version"], collected["cuda_version"]) == ("580.159.04", "13.0")
        assert collected["memory_mib"] == collected["cpu"]["memory_total_mib"] == 24105

    def test_h200_meets_the_collection_defaults(self):
        mode, problems, warnings = check(
            *h200_facts(), min_gpus=1, min_driver_version="550.54.14", min_cuda_version="12.4"
        )
        assert (mode, problems, warnings) == ("gpu", [], [])

    def test_too_few_gpus(self):
        mode, problems, _warnings = check(*h200_facts(), min_gpus=2, allow_cpu=True)
        assert mode == "gpu"
        (problem,) = problems
        assert "found 1 GPU(s) on node1 (0: NVIDIA H200), min_gpus is 2" in problem

    def test_driver_too_old(self):
        _mode, problems, _warnings = check(*h200_facts(), min_driver_version="590.44.01")
        assert problems == [
            "driver 580.159.04 < 590.44.01 required by the vLLM build (min_driver_version) on node1; upgrade the driver"
        ]

    def test_cuda_too_old(self):
        _mode, problems, _warnings = check(*h200_facts(), min_cuda_version="13.1")
        (problem,) = problems
        assert "supports CUDA up to 13.0 < 13.1" in problem and "upgrade the driver" in problem

    def test_no_gpu_fails_unless_cpu_is_allowed(self):
        collected, absent = no_gpu_facts()
        mode, problems, _warnings = check(collected, absent, min_gpus=1, min_driver_version="550.54.14")
        assert mode == "cpu"
        (problem,) = problems
        assert problem.startswith("no NVIDIA GPU found on node1: nvidia-smi is not installed")
        assert "allow_cpu: true" in problem
        assert check(collected, absent, min_gpus=1, allow_cpu=True, min_driver_version="550.54.14") == (
            "cpu",
            [],
            [],
        )

    def test_no_gpu_passes_when_none_is_needed(self):
        assert check(*no_gpu_facts(), min_gpus=0) == ("cpu", [], [])


def test_gate_option_errors_name_each_bad_option():
    errors = facts.gate_option_errors({"min_driver_version": "580.x", "min_cuda_version": "13.0", "min_gpus": 1})
    assert errors == ["min_driver_version '580.x' is not a version made of numbers and dots, like 580.65.06 or 13.0"]
    assert facts.gate_option_errors({"min_driver_version": None, "min_cuda_version": "", "min_gpus": 0}) == []
    assert facts.gate_option_errors({"min_gpus": -1}) == ["min_gpus is -1; it must be 0 or more"]
