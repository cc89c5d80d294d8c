# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``storage`` controller: PersistentVolumeClaim binding and PersistentVolume phases.

Pre-bound volumeName, dynamic provisioning from a StorageClass, WaitForFirstConsumer, static matching for class ""
or kubernetes.io/no-provisioner, ProvisioningFailed for a class that does not exist, retroactive default class;
volumes go Available, Bound, Released, and dynamic volumes with reclaimPolicy Delete are deleted with their claim.
"""

from __future__ import annotations

from ..jsondata import json_copy
from ..quantity import parse_quantity
from .base import Controller, phase_of, pod_claims

NO_PROVISIONER = "kubernetes.io/no-provisioner"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class StorageController(Controller):
    name = "persistentvolume-controller"

    def reconcile(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.objects("storage.k8s.io/v1", "StorageClass")}
        default = _default_class(classes)
        for claim in self.live("v1", "PersistentVolumeClaim"):
            self._claim(claim, classes, default)
        claims = {c["metadata"]["uid"]: c for c in self.objects("v1", "PersistentVolumeClaim")}
        for volume in self.live("v1", "PersistentVolume"):
            self._volume(volume, claims)

    def _claim(self, claim: dict, classes: dict, default: str | None) -> None:
        claim = self._apply_default_class(claim, default)
        spec, status = claim.get("spec") or {}, claim.get("status") or {}
        if status.get("phase") == "Bound":
            if self.peek("v1", "PersistentVolume", None, spec.get("volumeName") or "") is None:
                self.write_status(claim, dict(status, phase="Lost"))
            return
        if status.get("phase") == "Lost":
            return
        class_name = spec.get("storageClassName") or ""
        if spec.get("volumeName"):
            self._bind_prebound(claim, class_name)
            return
        storage_class = classes.get(class_name) if class_name else None
        if class_name and storage_class is None:
            message = f'storageclass.storage.k8s.io "{class_name}" not found'
            self._pending(claim, "ProvisioningFailed", message, "Warning")
            return
        waits = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        consumer = self._scheduled_consumer(claim) if waits else None
        if waits and consumer is None:
            self._pending(claim, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
        elif not class_name or storage_class.get("provisioner") == NO_PROVISIONER:
            self._bind_static(claim, class_name)
        else:
            self._bind(claim, self._provision(claim, storage_class, consumer))

    def _apply_default_class(self, claim: dict, default: str | None) -> dict:
        """A claim that names no class (not even "") gets the default one, as the admission plugin would."""
        spec = claim.get("spec") or {}
        if "storageClassName" in spec or not default or spec.get("volumeName"):
            return claim
        new = json_copy(claim)
        new["spec"]["storageClassName"] = default
        return self.update(new)

    def _pending(self, claim: dict, reason: str, message: str, kind: str = "Normal") -> None:
        self.write_status(claim, dict(claim.get("status") or {}, phase="Pending"))
        self.event(claim, reason, message, kind)

    def _bind_prebound(self, claim: dict, class_name: str) -> None:
        volume = self.peek("v1", "PersistentVolume", None, claim["spec"]["volumeName"])
        if volume is not None and _matches(volume, claim, class_name, prebound=True):
            self._bind(claim, volume)
        elif not phase_of(claim):
            self.write_status(claim, {"phase": "Pending"})

    def _bind_static(self, claim: dict, class_name: str) -> None:
        """Bind to the smallest available volume that matches."""
        candidates = [
            v for v in self.objects("v1", "PersistentVolume") if _matches(v, claim, class_name, prebound=False)
        ]
        if candidates:
            self._bind(claim, min(candidates, key=lambda v: parse_quantity(_storage(v["spec"].get("capacity")))))
        elif class_name:
            message = f'storageclass.storage.k8s.io "{class_name}" has no available persistent volumes'
            self._pending(claim, "FailedBinding", message)
        else:
            message = "no persistent volumes available for this claim and no storage class is set"
            self._pending(claim, "FailedBinding", message)

    def _scheduled_consumer(self, claim: dict) -> dict | None:
        for pod in self.objects("v1", "Pod", claim["metadata"]["namespace"]):
            if pod["spec"].get("nodeName") and claim["metadata"]["name"] in pod_claims(pod):
                return pod
        return None

    def _provision(self, claim: dict, storage_class: dict, consumer: dict | None) -> dict:
        name = f"pvc-{claim['metadata']['uid']}"
        existing = self.peek("v1", "PersistentVolume", None, name)
        if existing is not None:
            return existing
        provisioner = storage_class["provisioner"]
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {
                    "pv.kubernetes.io/provisioned-by": provisioner,
                    "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                    "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
                },
            },
            "spec": _provisioned_spec(name, claim, storage_class, consumer),
            "status": {"phase": "Bound"},
        }
        volume = self.create(body, keep_status=True)
        self.event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}", component=provisioner)
        return volume

    def _bind(self, claim: dict, volume: dict) -> None:
        old_ref = (volume.get("spec") or {}).get("claimRef") or {}
        if old_ref.get("uid") != claim["metadata"]["uid"]:
            new = json_copy(volume)
            new["spec"]["claimRef"] = _claim_ref(claim)
            volume = self.update(new)
        self.write_status(volume, {"phase": "Bound"})
        claim = self.update(_bound_claim(claim, volume, self._scheduled_consumer(claim)))
        self.write_status(
            claim,
            {
                "phase": "Bound",
                "accessModes": list(volume["spec"].get("accessModes") or []),
                "capacity": dict(volume["spec"].get("capacity") or {}),
            },
        )

    def _volume(self, volume: dict, claims: dict) -> None:
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef")
        phase = phase_of(volume)
        if not ref:
            if phase != "Available":
                self.write_status(volume, {"phase": "Available"})
            return
        claim = claims.get(ref.get("uid")) if ref.get("uid") else None
        if claim is None and not ref.get("uid"):
            return  # pre-bound to a claim that is not there yet
        if claim is None:
            if spec.get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
                self.delete(volume)
            elif phase != "Released":
                self.write_status(volume, {"phase": "Released"})


def _default_class(classes: dict) -> str | None:
    for name, storage_class in sorted(classes.items()):
        if (storage_class["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            return name
    return None


def _storage(resources: dict | None, default=0):
    return (resources or {}).get("storage", default)


def _matches(volume: dict, claim: dict, class_name: str, prebound: bool) -> bool:
    """Whether a volume can serve a claim: its claimRef (if any), phase, class, mode, access modes and size."""
    spec, claim_spec = volume.get("spec") or {}, claim.get("spec") or {}
    ref = spec.get("claimRef") or {}
    if ref and not (
        ref.get("name") == claim["metadata"]["name"]
        and ref.get("namespace") == claim["metadata"]["namespace"]
        and ref.get("uid") in (None, "", claim["metadata"]["uid"])
    ):
        return False
    if not prebound and not ref and (volume.get("status") or {}).get("phase", "Available") != "Available":
        return False
    if (spec.get("storageClassName") or "") != class_name:
        return False
    if spec.get("volumeMode", "Filesystem") != claim_spec.get("volumeMode", "Filesystem"):
        return False
    if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    wanted = parse_quantity(_storage((claim_spec.get("resources") or {}).get("requests")))
    return parse_quantity(_storage(spec.get("capacity"))) >= wanted


def _claim_ref(claim: dict) -> dict:
    metadata = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "name": metadata["name"],
        "namespace": metadata["namespace"],
        "uid": metadata["uid"],
        "resourceVersion": metadata.get("resourceVersion"),
    }


def _provisioned_spec(name: str, claim: dict, storage_class: dict, consumer: dict | None) -> dict:
    """A CSI volume as the external provisioner makes it, pinned to the consumer's node for WaitForFirstConsumer."""
    spec = claim["spec"]
    provisioner = storage_class["provisioner"]
    volume_spec = {
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "capacity": {"storage": str(_storage((spec.get("resources") or {}).get("requests"), "1Gi"))},
        "claimRef": _claim_ref(claim),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
        "storageClassName": storage_class["metadata"]["name"],
        "volumeMode": spec.get("volumeMode", "Filesystem"),
        "csi": {
            "driver": provisioner,
            "volumeHandle": f"{name}-handle",
            "volumeAttributes": {
                "storage.kubernetes.io/csiProvisionerIdentity": f"{provisioner}-emulated",
                **{k: str(v) for k, v in (storage_class.get("parameters") or {}).items()},
            },
        },
    }
    if storage_class.get("mountOptions"):
        volume_spec["mountOptions"] = list(storage_class["mountOptions"])
    if consumer is not None:
        requirement = {"key": "kubernetes.io/hostname", "operator": "In", "values": [consumer["spec"]["nodeName"]]}
        volume_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [requirement]}]}}
    return volume_spec


def _bound_claim(claim: dict, volume: dict, consumer: dict | None) -> dict:
    """The claim with its volumeName and the annotations the binder and the provisioner leave on it."""
    new_claim = json_copy(claim)
    annotations = new_claim["metadata"].setdefault("annotations", {})
    annotations["pv.kubernetes.io/bind-completed"] = "yes"
    if not claim["spec"].get("volumeName"):
        annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
    provisioner = (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
    if provisioner:
        annotations["volume.beta.kubernetes.io/storage-provisioner"] = provisioner
        annotations["volume.kubernetes.io/storage-provisioner"] = provisioner
    if consumer is not None and (volume["spec"].get("nodeAffinity") or provisioner):
        annotations["volume.kubernetes.io/selected-node"] = consumer["spec"]["nodeName"]
    new_claim["spec"]["volumeName"] = volume["metadata"]["name"]
    return new_claim
