"""The model volume's StorageClass and download state on Kubernetes (_model_volume)."""

from __future__ import annotations

import urllib.parse

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_volume import (
    choose_storage_class,
    claim_reader,
    download_state,
    look_command,
    seen_damage,
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
        "complete": True, "damaged": [], "job_exists": False, "job_reusable": False, "job_was": "none",
    }  # fmt: skip
    assert not download_state(claim, None, "other@main")["complete"]


def test_a_running_or_finished_job_for_this_model_is_reused_and_a_failed_or_other_one_replaced():
    assert download_state({}, job(), MODEL)["job_reusable"]
    assert download_state({}, job(MODEL, "Complete"), MODEL)["job_was"] == MODEL + " Complete"
    failed = download_state(None, job(MODEL, "Failed"), MODEL)
    assert failed["job_exists"] and not failed["job_reusable"] and failed["job_was"] == MODEL + " Failed"
    other = download_state(None, job("x@v1"), MODEL)
    assert not other["job_reusable"] and other["job_was"] == "x@v1 running"


def reader_pod(name, phase="Running", ready="True", sub_path=None, claim="llm-models"):
    mount = {"name": "models", "mountPath": "/models"}
    if sub_path:
        mount["subPath"] = sub_path
    return {
        "metadata": {"name": name},
        "spec": {
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": claim}}],
            "containers": [{"name": "sidecar"}, {"name": "ray", "volumeMounts": [mount]}],
        },
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_the_claim_reader_is_a_running_ready_pod_that_mounts_the_claim():
    pods = [
        reader_pod("a-pending", phase="Pending"),
        reader_pod("b-not-ready", ready="False"),
        reader_pod("c-other-claim", claim="other"),
        reader_pod("e-head"),
        reader_pod("d-job", phase="Succeeded"),
    ]
    assert claim_reader(pods, "llm-models", "/models/m", "/models") == {
        "pod": "e-head",
        "container": "ray",
        "path": "/models/m",
    }
    assert claim_reader(pods[:3] + pods[4:], "llm-models", "/models/m", "/models") is None
    assert claim_reader([reader_pod("s", sub_path="m")], "llm-models", "/models/m", "/models")["path"] == "/models"
    assert claim_reader([reader_pod("s", sub_path="other")], "llm-models", "/models/m", "/models") is None


def test_damage_seen_from_a_pod_makes_a_marked_model_incomplete_and_its_job_replaced():
    claim = {"metadata": {"annotations": {"llmops.ray-vllm/model": MODEL, "llmops.ray-vllm/complete": "true"}}}
    finished = job(MODEL, "Complete")
    assert download_state(claim, finished, MODEL)["complete"] is True
    damaged = download_state(claim, finished, MODEL, ["tokenizer.json is missing"])
    assert damaged["complete"] is False and damaged["job_reusable"] is False
    assert damaged["damaged"] == ["tokenizer.json is missing"]
    unmarked = download_state(None, finished, MODEL, ["ignored"])
    assert unmarked["damaged"] == [] and unmarked["job_reusable"] is True


def test_the_look_command_fits_an_exec_url_and_no_look_finds_no_damage():
    # exec sends its command in the request's URL; servers cap a request line near 8 KiB (aiohttp 8190, nginx 8k).
    assert len(urllib.parse.quote(look_command("/models/DeepSeek-R1-Distill-Llama-70B"))) < 4096
    assert seen_damage("", "/m") == [] and seen_damage("OCI runtime exec failed", "/m") == []
    assert seen_damage('{"marker_error": ["EACCES", "Permission denied"]}', "/m") == [
        "/m/.ray_vllm_complete.json cannot be read (Permission denied)."
    ]
