"""The model volume's StorageClass and download state on Kubernetes (_model_volume)."""

from __future__ import annotations

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import (
    choose_storage_class,
    download_state,
)

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Llama-70B@master"


def storage_class(name, default=False):
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def job(model=MODEL, *conditions):
    return {
        "metadata": {"annotations": {"llmops.ray-vllm/model": model}},
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def test_the_wanted_class_else_the_default_one():
    classes = [storage_class("object-storage"), storage_class("standard", default=True)]
    assert choose_storage_class(classes, "object-storage") == {
        "name": "object-storage",
        "names": ["object-storage", "standard"],
    }
    assert choose_storage_class(classes)["name"] == "standard"
    assert choose_storage_class([storage_class("a")]) == {"name": "", "names": ["a"]}
    assert choose_storage_class([], "missing") == {"name": "missing", "names": []}


def test_a_claim_marked_complete_for_this_model_needs_no_download():
    claim = {"metadata": {"annotations": {"llmops.ray-vllm/model": MODEL, "llmops.ray-vllm/complete": "true"}}}
    assert download_state(claim, None, MODEL) == {
        "complete": True, "job_exists": False, "job_reusable": False, "job_was": "none",
    }  # fmt: skip
    assert not download_state(claim, None, "other@main")["complete"]


def test_a_running_or_finished_job_for_this_model_is_reused_and_a_failed_or_other_one_replaced():
    assert download_state({}, job(), MODEL)["job_reusable"]
    assert download_state({}, job(MODEL, "Complete"), MODEL)["job_was"] == MODEL + " Complete"
    failed = download_state(None, job(MODEL, "Failed"), MODEL)
    assert failed["job_exists"] and not failed["job_reusable"] and failed["job_was"] == MODEL + " Failed"
    other = download_state(None, job("x@v1"), MODEL)
    assert not other["job_reusable"] and other["job_was"] == "x@v1 running"
