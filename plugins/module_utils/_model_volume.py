# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The model volume on Kubernetes: which StorageClass, and whether the download Job has to run.

The completion marker sits on the volume, which the control node cannot read, so the claim carries the result as
annotations (``llmops.ray-vllm/model: <id>@<revision>``, ``llmops.ray-vllm/complete: "true"``), and the download
Job carries the model it fetches as an annotation too.
"""

from __future__ import annotations

MODEL_ANNOTATION = "llmops.ray-vllm/model"
COMPLETE_ANNOTATION = "llmops.ray-vllm/complete"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _annotations(obj):
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def choose_storage_class(classes, wanted=""):
    """``{"name", "names"}``: the wanted StorageClass (or the cluster's default when none is wanted) and all names.

    ``name`` is empty when the cluster has no default and none is wanted; the caller checks it is in ``names``.
    """
    names = [c["metadata"]["name"] for c in classes or []]
    if wanted:
        return {"name": wanted, "names": names}
    defaults = [c["metadata"]["name"] for c in classes or [] if _annotations(c).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    return {"name": defaults[0] if defaults else "", "names": names}


def _true_conditions(job):
    return [
        c.get("type") for c in ((job or {}).get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    ]


def download_state(claim, job, model):
    """What the volume holds and what to do with the Job there, for ``model`` (``<id>@<revision>``).

    ``complete``: the claim says the model is complete; ``job_exists``; ``job_reusable``: the Job there fetches the
    same model and has not failed, so wait for it (or take its success) rather than replace it; ``job_was``: the Job's
    model and outcome, for the report.
    """
    annotations = _annotations(claim)
    job_model = _annotations(job).get(MODEL_ANNOTATION)
    outcomes = [c for c in _true_conditions(job) if c in ("Complete", "Failed")]
    return {
        "complete": annotations.get(MODEL_ANNOTATION) == model and annotations.get(COMPLETE_ANNOTATION) == "true",
        "job_exists": bool(job),
        "job_reusable": bool(job) and job_model == model and "Failed" not in outcomes,
        "job_was": "{} {}".format(job_model or "?", outcomes[0] if outcomes else "running") if job else "none",
    }
