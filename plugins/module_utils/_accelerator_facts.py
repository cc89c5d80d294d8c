# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Parse nvidia-smi, /proc/cpuinfo and /proc/meminfo into accelerator facts, and check them against expectations."""

from __future__ import annotations

import csv
import re
from xml.etree import ElementTree

# Order matters: parse_query_gpu() maps the CSV columns by position.
QUERY_GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "memory.total",
    "memory.used",
    "memory.free",
    "driver_version",
    "compute_cap",
    "mig.mode.current",
    "persistence_mode",
)
QUERY_GPU_ARGS = ("--query-gpu=" + ",".join(QUERY_GPU_FIELDS), "--format=csv,noheader,nounits")

# Returned key for each queried field.
GPU_KEYS = (
    "index",
    "name",
    "uuid",
    "pci_bus_id",
    "memory_total_mib",
    "memory_used_mib",
    "memory_free_mib",
    "driver_version",
    "compute_capability",
    "mig_mode",
    "persistence_mode",
)
INT_KEYS = ("index", "memory_total_mib", "memory_used_mib", "memory_free_mib")

# What nvidia-smi prints for a value the GPU or driver cannot give.
UNAVAILABLE = ("", "[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", "[Insufficient Permissions]")

CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")

# nvidia-smi exits 6 and prints this when the driver is loaded but sees no GPU.
NO_DEVICES = "No devices were found"
NOT_INSTALLED = "nvidia-smi is not installed"

NUMA_NODES_ONLINE = "/sys/devices/system/node/online"


def _value(raw):
    raw = raw.strip()
    return None if raw in UNAVAILABLE else raw


def _int_or_none(raw):
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return None


def parse_query_gpu(text):
    """GPUs from ``nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,noheader,nounits``, one dict each.

    Unavailable values (``[N/A]``, ``[Not Supported]`` ...) become None. Raises ValueError on a line with the wrong
    number of columns, which means the output is not what was asked for.
    """
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(QUERY_GPU_FIELDS):
            raise ValueError(
                f"expected {len(QUERY_GPU_FIELDS)} comma-separated values ({','.join(QUERY_GPU_FIELDS)}), "
                f"got {len(row)}: {','.join(row)!r}"
            )
        gpu = dict(zip(GPU_KEYS, (_value(cell) for cell in row)))
        for key in INT_KEYS:
            gpu[key] = _int_or_none(gpu[key])
        gpus.append(gpu)
    return gpus


def parse_smi_header(text):
    """``(driver_version, cuda_version)`` from the banner of plain ``nvidia-smi``; None for what is not shown.

    The CUDA version there is the newest CUDA the driver supports, not an installed toolkit.
    """
    driver = re.search(r"Driver Version:\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def parse_smi_xml(text):
    """``(driver_version, cuda_version)`` from ``nvidia-smi -q -x``; None for what is missing or unavailable."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None, None

    def top(tag):
        element = root.find(tag)
        return None if element is None or element.text is None else _value(element.text)

    return top("driver_version"), top("cuda_version")


def version_tuple(version):
    """``"535.104.05"`` -> ``(535, 104, 5)``. Raises ValueError for anything but dot-separated numbers."""
    text = str(version).strip()
    if not re.match(r"^[0-9]+(\.[0-9]+)*$", text):
        raise ValueError(f"{version!r} is not a dotted version number")
    return tuple(int(part) for part in text.split("."))


def gate_option_errors(params, names=("min_driver_version", "min_cuda_version")):
    """One message per bad option the GPU gate modules share: versions not dotted numbers, a negative min_gpus."""
    errors = []
    for name in names:
        if params.get(name):
            try:
                version_tuple(params[name])
            except ValueError:
                errors.append(
                    f"{name} {params[name]!r} is not a version made of numbers and dots, like 580.65.06 or 13.0"
                )
    if params.get("min_gpus") is not None and params["min_gpus"] < 0:
        errors.append(f"min_gpus is {params['min_gpus']}; it must be 0 or more")
    return errors


def version_at_least(version, minimum):
    """Whether ``version >= minimum``, missing trailing parts counting as 0 (``12.4`` == ``12.4.0``)."""
    have, want = list(version_tuple(version)), list(version_tuple(minimum))
    width = max(len(have), len(want))
    return have + [0] * (width - len(have)) >= want + [0] * (width - len(want))


def version_problems(facts, minimums, messages, **context):
    """The problems of the version gates, one sentence per version in ``minimums`` that ``facts`` does not meet.

    ``minimums`` maps a facts key (``driver_version``, ``cuda_version``) to its minimum (falsy: no gate);
    ``messages`` maps it to ``(unknown, too_old)``, format strings over ``seen``, ``minimum`` and ``context``, said
    when the version could not be read or is below the minimum.
    """
    problems = []
    for key, minimum in minimums.items():
        seen = facts.get(key)
        unknown, too_old = messages[key]
        if not minimum:
            continue
        if not seen:
            problems.append(unknown.format(minimum=minimum, **context))
        elif not version_at_least(seen, minimum):
            problems.append(too_old.format(seen=seen, minimum=minimum, **context))
    return problems


def parse_cpuinfo(text):
    """``(logical_cores, model_name, vendor_id, flags)`` from /proc/cpuinfo; flags is a set.

    x86 lists ``flags``; Arm lists ``Features`` instead and may have no model name.
    """
    logical_cores = 0
    model_name = vendor_id = None
    flags = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            logical_cores += 1
        elif key == "model name" and model_name is None:
            model_name = value
        elif key == "vendor_id" and vendor_id is None:
            vendor_id = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return logical_cores, model_name, vendor_id, flags


def parse_meminfo(text):
    """/proc/meminfo as ``{field: kibibytes}``."""
    fields = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_()]+):\s+([0-9]+)", line)
        if match:
            fields[match.group(1)] = int(match.group(2))
    return fields


def count_cpu_list(text):
    """Number of entries in a kernel CPU/node list such as ``0``, ``0-1`` or ``0-3,8-11``; None when empty."""
    total = 0
    for part in text.strip().split(","):
        if not part:
            continue
        first, _sep, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total or None


def cpu_facts(cpuinfo_text, meminfo_text, node_online_text=None):
    """The ``cpu`` fact: cores, model, the flags vLLM's CPU backend cares about, memory and NUMA nodes."""
    logical_cores, model_name, vendor_id, flags = parse_cpuinfo(cpuinfo_text)
    meminfo = parse_meminfo(meminfo_text)
    interesting = {flag: flag in flags for flag in CPU_FLAGS_OF_INTEREST}

    def mib(field):
        return meminfo[field] // 1024 if field in meminfo else None

    numa_nodes = None
    if node_online_text is not None:
        try:
            numa_nodes = count_cpu_list(node_online_text)
        except ValueError:
            numa_nodes = None
    return {
        "logical_cores": logical_cores,
        "model_name": model_name,
        "vendor_id": vendor_id,
        "flags": interesting,
        # vLLM's CPU backend runs bfloat16 fast only with AVX-512 BF16 or AMX; elsewhere it emulates or misbehaves.
        "bf16_supported": interesting["avx512_bf16"] or interesting["amx_bf16"],
        "memory_total_mib": mib("MemTotal"),
        "memory_available_mib": mib("MemAvailable"),
        "numa_nodes": numa_nodes,
    }


def gpu_summary(gpus):
    """``(gpu_product, gpu_memory_mib, driver_version)`` over a host's GPUs.

    gpu_product is the common name, or the distinct names joined with `` + `` on a mixed host; gpu_memory_mib is
    the smallest total memory, which is what tensor parallelism over all of them can count on.
    """
    if not gpus:
        return None, None, None
    names = []
    for gpu in gpus:
        if gpu["name"] and gpu["name"] not in names:
            names.append(gpu["name"])
    memories = [gpu["memory_total_mib"] for gpu in gpus if gpu["memory_total_mib"] is not None]
    drivers = [gpu["driver_version"] for gpu in gpus if gpu["driver_version"]]
    return (
        " + ".join(names) or None,
        min(memories) if memories else None,
        drivers[0] if drivers else None,
    )


def smi_failure_reason(rc, stdout, stderr):
    """One line saying why ``nvidia-smi`` gave no GPU list, from its exit code and output."""
    output = " ".join((stderr or stdout or "").split())
    if NO_DEVICES in output:
        return f"nvidia-smi found no GPU ({NO_DEVICES})"
    return "nvidia-smi failed with exit code {}: {}".format(rc, output[:300] or "no output")


DRIVER_UNKNOWN = (
    "could not read the NVIDIA driver version on {host}, min_driver_version is {minimum}. Run nvidia-smi there and "
    "check that the driver is loaded"
)
DRIVER_TOO_OLD = (
    "driver {seen} < {minimum} required by the vLLM build (min_driver_version) on {host}; upgrade the driver"
)
CUDA_UNKNOWN = (
    "could not read the CUDA version the driver supports on {host} (nvidia-smi header), min_cuda_version is "
    "{minimum}. Run nvidia-smi there and check its header"
)
CUDA_TOO_OLD = (
    "the driver {driver} on {host} supports CUDA up to {seen} < {minimum} required by the vLLM build "
    "(min_cuda_version); upgrade the driver"
)
VERSION_MESSAGES = {"driver_version": (DRIVER_UNKNOWN, DRIVER_TOO_OLD), "cuda_version": (CUDA_UNKNOWN, CUDA_TOO_OLD)}


def check_expectations(facts, host, min_gpus, allow_cpu, min_driver_version, min_cuda_version, gpu_absent_reason):
    """``(mode, problems, warnings)`` for collected facts against the gate options.

    A host without GPU passes as mode ``cpu`` when ``allow_cpu`` is set or ``min_gpus`` is 0 (a node that needs no
    GPU, like the head of a GPU cluster); the version checks only apply to GPUs.
    """
    problems, warnings = [], []
    gpus = facts["gpus"]
    if not gpus:
        if not allow_cpu and min_gpus > 0:
            problems.append(
                f"no NVIDIA GPU found on {host}: {gpu_absent_reason}. min_gpus is {min_gpus}. Install the NVIDIA "
                "driver (or the GPU operator), or set allow_cpu: true to serve "
                "on CPU, or min_gpus: 0 for a node that needs no GPU (like the Ray head of a GPU cluster)"
            )
        elif gpu_absent_reason and not gpu_absent_reason.startswith(NOT_INSTALLED):
            # nvidia-smi is there but gave nothing: a broken driver on a host that may run on CPU deserves a word.
            warnings.append(f"no GPU used on {host}: {gpu_absent_reason}")
        return "cpu", problems, warnings

    listing = ", ".join(f"{gpu['index']}: {gpu['name']}" for gpu in gpus)
    if len(gpus) < min_gpus:
        problems.append(
            f"found {len(gpus)} GPU(s) on {host} ({listing}), min_gpus is {min_gpus}. Check that every GPU shows "
            "in `nvidia-smi -L` (a GPU fallen off the bus or held by a VM passthrough is missing there), "
            "or lower min_gpus"
        )
    minimums = {"driver_version": min_driver_version, "cuda_version": min_cuda_version}
    problems.extend(version_problems(facts, minimums, VERSION_MESSAGES, host=host, driver=facts["driver_version"]))
    for gpu in gpus:
        if gpu["mig_mode"] == "Enabled":
            warnings.append(
                "GPU {} ({}) on {} has MIG enabled: CUDA programs see its MIG instances, not the whole GPU, and its "
                "memory figures here are the whole GPU's. Disable MIG (nvidia-smi -i {} -mig 0) to serve on the "
                "whole GPU".format(gpu["index"], gpu["name"], host, gpu["index"])
            )
    if " + " in (facts["gpu_product"] or ""):
        warnings.append(
            "{} mixes GPU models ({}); vLLM sizes tensor parallel shards by the smallest GPU ({} MiB)".format(
                host, facts["gpu_product"], facts["gpu_memory_mib"]
            )
        )
    return "gpu", problems, warnings


def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def read_gpus(module, nvidia_smi, nvidia_smi_given):
    """``(gpus, driver_version, cuda_version, absent_reason)`` by running nvidia-smi; absent_reason is None with GPUs.

    Raises ValueError when nvidia-smi answers with output this parser does not understand.
    """
    if not nvidia_smi:
        where = f"at {nvidia_smi_given}" if nvidia_smi_given else "on PATH"
        return [], None, None, f"{NOT_INSTALLED} (not found {where})"
    rc, stdout, stderr = module.run_command([nvidia_smi] + list(QUERY_GPU_ARGS))
    if rc != 0:
        return [], None, None, smi_failure_reason(rc, stdout, stderr)
    gpus = parse_query_gpu(stdout)
    if not gpus:
        return [], None, None, "nvidia-smi listed no GPU"
    _product, _memory, driver = gpu_summary(gpus)
    rc, stdout, _stderr = module.run_command([nvidia_smi])
    header_driver, cuda = parse_smi_header(stdout) if rc == 0 else (None, None)
    if cuda is None:
        # Some builds leave the CUDA version out of the banner; the XML report carries it too.
        rc, stdout, _stderr = module.run_command([nvidia_smi, "-q", "-x"])
        xml_driver, cuda = parse_smi_xml(stdout) if rc == 0 else (None, None)
        header_driver = header_driver or xml_driver
    return gpus, driver or header_driver, cuda, None


def collect(module, nvidia_smi, nvidia_smi_given, proc_cpuinfo, proc_meminfo, node_online=NUMA_NODES_ONLINE):
    """All facts of this host, plus why no GPU is used (None when GPUs were found)."""
    gpus, driver, cuda, absent_reason = read_gpus(module, nvidia_smi, nvidia_smi_given)
    try:
        node_online_text = read_text(node_online)
    except OSError:
        node_online_text = None  # no NUMA information in this kernel or container
    cpu = cpu_facts(read_text(proc_cpuinfo), read_text(proc_meminfo), node_online_text)
    product, memory, _driver = gpu_summary(gpus)
    facts = {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "gpu_product": product,
        "gpu_memory_mib": memory,
        "driver_version": driver,
        "cuda_version": cuda,
        "cpu": cpu,
        "memory_mib": cpu["memory_total_mib"],
    }
    return facts, absent_reason
