# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The model volume on Kubernetes: which StorageClass, and whether the download Job has to run.

The completion marker sits on the volume, which the control node cannot read, so the claim carries the result as
annotations (``llmops.ray-vllm/model: <id>@<revision>``, ``llmops.ray-vllm/complete: "true"``), and the download
Job carries the model it fetches as an annotation too. Once a pod that mounts the volume runs, a re-run looks at
the files from there (claim_reader), so a model damaged after its marker is fetched again.
"""

from __future__ import annotations

import inspect
import json
import posixpath
import shlex

from ansible_collections.llmops.ray_vllm.plugins.module_utils._model_dir import (
    MARKER_NAME,
    file_state,
    look_at_marked_dir,
    look_problems,
)
from ansible_collections.llmops.ray_vllm.plugins.module_utils._waiter import pod_ready

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


def download_state(claim, job, model, damage=None):
    """What the volume holds and what to do with the Job there, for ``model`` (``<id>@<revision>``).

    ``complete``: the claim says the model is complete and ``damage`` (what a look at the files from a pod found
    wrong, see claim_reader) is empty; ``damaged``: that list; ``job_exists``; ``job_reusable``: the Job there fetches
    the same model and has neither failed nor finished before the damage, so wait for it (or take its success) rather
    than replace it; ``job_was``: the Job's model and outcome, for the report.
    """
    annotations = _annotations(claim)
    job_model = _annotations(job).get(MODEL_ANNOTATION)
    outcomes = [c for c in _true_conditions(job) if c in ("Complete", "Failed")]
    marked = annotations.get(MODEL_ANNOTATION) == model and annotations.get(COMPLETE_ANNOTATION) == "true"
    return {
        "complete": marked and not damage,
        "damaged": list(damage or []) if marked else [],
        "job_exists": bool(job),
        "job_reusable": bool(job) and job_model == model and "Failed" not in outcomes and not (marked and damage),
        "job_was": "{} {}".format(job_model or "?", outcomes[0] if outcomes else "running") if job else "none",
    }


def claim_reader(pods, claim, model_dir, claim_root):
    """Where a running pod sees the model's files: ``{"pod", "container", "path"}`` for the first Running and Ready
    pod (by name) with a container that mounts ``claim``, ``path`` being ``model_dir`` (the model's directory where
    the download Job mounts the claim, at ``claim_root``) in that container; None without such a pod."""
    relative = posixpath.relpath(model_dir, claim_root)
    for pod in sorted(pods or [], key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        if not _running_ready(pod):
            continue
        spec = pod.get("spec") or {}
        volumes = {v.get("name") for v in spec.get("volumes") or [] if _claim_name(v) == claim}
        for container in spec.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                path = _mounted_path(mount, relative) if mount.get("name") in volumes else None
                if path:
                    return {"pod": pod["metadata"]["name"], "container": container.get("name"), "path": path}
    return None


def _claim_name(volume):
    return (volume.get("persistentVolumeClaim") or {}).get("claimName")


def _running_ready(pod):
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def _mounted_path(mount, relative):
    """``relative`` (a path inside the claim) where ``mount`` shows it; None when its subPath leaves it out."""
    sub = (mount.get("subPath") or "").strip("/")
    if sub and relative != sub and not relative.startswith(sub + "/"):
        return None
    inside = posixpath.relpath(relative, sub) if sub else relative
    return posixpath.normpath(posixpath.join(mount.get("mountPath") or "/", inside))


def look_command(path):
    """The command that looks at the model's files in a pod (kubernetes.core.k8s_exec's ``command``): python3 running
    _model_dir's own look_at_marked_dir and file_state, taken from their source, on ``path``. Only those two
    functions travel, not the whole module: exec sends its command in the request's URL, which servers cap near
    8 KiB."""
    return " ".join(shlex.quote(word) for word in ("python3", "-c", look_program(), path))


def look_program():
    """The Python program of look_command, which prints the look at the folder named by its argument as JSON."""
    return "\n".join(
        [
            "import errno, json, os, sys",
            "MARKER_NAME = %r" % MARKER_NAME,
            inspect.getsource(file_state),
            inspect.getsource(look_at_marked_dir),
            "sys.stdout.write(json.dumps(look_at_marked_dir(sys.argv[1])))",
        ]
    )


def seen_damage(answer, path):
    """look_problems of a look's answer (its JSON text); empty for an answer that is no look (exec refused, no
    python3 in the image), which the role reports by itself."""
    try:
        look = json.loads(answer or "")
    except ValueError:
        return []
    return look_problems(look, path) if isinstance(look, dict) else []
