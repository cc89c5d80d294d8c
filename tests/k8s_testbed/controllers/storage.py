# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``storage`` controller: PersistentVolumeClaim binding and PersistentVolume phases.

Pre-bound volumeName, dynamic provisioning from a StorageClass, WaitForFirstConsumer, static matching for class ""
or kubernetes.io/no-provisioner, ProvisioningFailed for a class that does not exist, retroactive default class;
volumes go Available, Bound, Released, and dynamic volumes with reclaimPolicy Delete are deleted with their claim.
"""

from __future__ import annotations

import copy

from ..quantity import parse_quantity
from .base import Controller, pod_claims

NO_PROVISIONER = "kubernetes.io/no-provisioner"


class StorageController(Controller):
    name = "persistentvolume-controller"

    def reconcile(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.objects("storage.k8s.io/v1", "StorageClass")}
        default = next(
            (
                n
                for n, c in sorted(classes.items())
                if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
            ),
            None,
        )
        for claim in self.live("v1", "PersistentVolumeClaim"):
            self._claim(claim, classes, default)
        claims = {c["metadata"]["uid"]: c for c in self.objects("v1", "PersistentVolumeClaim")}
        for volume in self.live("v1", "PersistentVolume"):
            self._volume(volume, claims)

    def _claim(self, claim: dict, classes: dict, default: str | None) -> None:
        spec = claim.get("spec") or {}
        if "storageClassName" not in spec and default and not spec.get("volumeName"):
            new = copy.deepcopy(claim)
            new["spec"]["storageClassName"] = default
            claim = self.update(new)
            spec = claim["spec"]
        status = claim.get("status") or {}
        if status.get("phase") == "Bound":
            volume = self.peek("v1", "PersistentVolume", None, spec.get("volumeName") or "")
            if volume is None:
                self.write_status(claim, dict(status, phase="Lost"))
            return
        if status.get("phase") == "Lost":
            return
        class_name = spec.get("storageClassName") or ""
        if spec.get("volumeName"):
            volume = self.peek("v1", "PersistentVolume", None, spec["volumeName"])
            if volume is not None and self._matches(volume, claim, class_name, prebound=True):
                self._bind(claim, volume)
            elif not status.get("phase"):
                self.write_status(claim, {"phase": "Pending"})
            return
        storage_class = classes.get(class_name) if class_name else None
        if class_name and storage_class is None:
            self.write_status(claim, dict(status, phase="Pending"))
            self.event(claim, "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found', "Warning")
            return
        waits = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        consumer = self._scheduled_consumer(claim) if waits else None
        if waits and consumer is None:
            self.write_status(claim, dict(status, phase="Pending"))
            self.event(claim, "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
            return
        static = not class_name or storage_class.get("provisioner") == NO_PROVISIONER
        if static:
            candidates = [
                v for v in self.objects("v1", "PersistentVolume") if self._matches(v, claim, class_name, prebound=False)
            ]
            if not candidates:
                self.write_status(claim, dict(status, phase="Pending"))
                message = (
                    "no persistent volumes available for this claim and no storage class is set"
                    if not class_name
                    else f'storageclass.storage.k8s.io "{class_name}" has no available persistent volumes'
                )
                self.event(claim, "FailedBinding", message)
                return
            volume = min(candidates, key=lambda v: parse_quantity((v["spec"].get("capacity") or {}).get("storage")))
            self._bind(claim, volume)
            return
        volume = self._provision(claim, storage_class, consumer)
        self._bind(claim, volume)

    def _scheduled_consumer(self, claim: dict) -> dict | None:
        for pod in self.objects("v1", "Pod", claim["metadata"]["namespace"]):
            if pod["spec"].get("nodeName") and claim["metadata"]["name"] in pod_claims(pod):
                return pod
        return None

    @staticmethod
    def _matches(volume: dict, claim: dict, class_name: str, prebound: bool) -> bool:
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
        wanted = parse_quantity(((claim_spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        return parse_quantity((spec.get("capacity") or {}).get("storage", 0)) >= wanted

    def _provision(self, claim: dict, storage_class: dict, consumer: dict | None) -> dict:
        spec = claim["spec"]
        name = f"pvc-{claim['metadata']['uid']}"
        existing = self.peek("v1", "PersistentVolume", None, name)
        if existing is not None:
            return existing
        provisioner = storage_class["provisioner"]
        volume_spec = {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "capacity": {"storage": str(((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi"))},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": claim["metadata"]["name"],
                "namespace": claim["metadata"]["namespace"],
                "uid": claim["metadata"]["uid"],
                "resourceVersion": claim["metadata"].get("resourceVersion"),
            },
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
            volume_spec["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [consumer["spec"]["nodeName"]],
                                }
                            ]
                        }
                    ]
                }
            }
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
            "spec": volume_spec,
            "status": {"phase": "Bound"},
        }
        volume = self.create(body, keep_status=True)
        self.event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}", component=provisioner)
        return volume

    def _bind(self, claim: dict, volume: dict) -> None:
        ref = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": claim["metadata"]["name"],
            "namespace": claim["metadata"]["namespace"],
            "uid": claim["metadata"]["uid"],
            "resourceVersion": claim["metadata"].get("resourceVersion"),
        }
        old_ref = (volume.get("spec") or {}).get("claimRef") or {}
        if old_ref.get("uid") != claim["metadata"]["uid"]:
            new = copy.deepcopy(volume)
            new["spec"]["claimRef"] = ref
            volume = self.update(new)
        self.write_status(volume, {"phase": "Bound"})
        new_claim = copy.deepcopy(claim)
        annotations = new_claim["metadata"].setdefault("annotations", {})
        annotations["pv.kubernetes.io/bind-completed"] = "yes"
        if not claim["spec"].get("volumeName"):
            annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
        provisioner = (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
        if provisioner:
            annotations["volume.beta.kubernetes.io/storage-provisioner"] = provisioner
            annotations["volume.kubernetes.io/storage-provisioner"] = provisioner
        consumer = self._scheduled_consumer(claim)
        if consumer is not None and (volume["spec"].get("nodeAffinity") or provisioner):
            annotations["volume.kubernetes.io/selected-node"] = consumer["spec"]["nodeName"]
        new_claim["spec"]["volumeName"] = volume["metadata"]["name"]
        claim = self.update(new_claim)
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
        phase = (volume.get("status") or {}).get("phase")
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
