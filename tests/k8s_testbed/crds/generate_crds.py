# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regenerate the KubeRay CustomResourceDefinitions that the API-server emulator installs.

The RayCluster, RayCronJob, RayJob and RayService CRDs are KubeRay v1.7.0's (``ray.io/v1``, and the deprecated
``ray.io/v1alpha1`` it still serves), field for field: their KubeRay parts are written here from the Go types of
``ray-operator/apis/ray/{v1,v1alpha1}`` at v1.7.0, and every embedded Kubernetes type (the pod templates, the
head and serve Services, env, resources, network policy rules, ...) is converted from the JSON schemas that ship
with kubernetes-validate for Kubernetes 1.36 (KubeRay v1.7.0 builds against k8s.io/api v0.36) into an OpenAPI v3
structural schema the way controller-gen v0.16.5 inlines it. Descriptions are left out, as KubeRay's own CRDs do.
``tests/k8s_testbed_tests/test_kuberay_crds.py`` proves the equality against the release.
The output is deterministic: run ``python tests/k8s_testbed/crds/generate_crds.py`` and commit the YAML files.
``--check`` exits 1 when a committed file differs from what would be written.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

K8S_SCHEMA_DIR = "v1.36.0-local-strict"
HERE = Path(__file__).resolve().parent

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
OPENAPI_FORMATS = {"int32", "int64", "float", "double", "byte", "binary", "date", "date-time", "password"}
# Keys of the JSON schemas that a CRD's structural schema may keep as they are.
KEPT_KEYS = (
    "enum",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "pattern",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
)
# Defaults that the Go types carry as +default markers (the JSON schemas lack them); controller-gen writes them into
# the CRD, so the API server fills them in inside a RayCluster's pod templates and Services.
KNOWN_DEFAULTS = {
    "io.k8s.api.core.v1.AzureDiskVolumeSource": {"fsType": "ext4", "readOnly": False},
    "io.k8s.api.core.v1.ConfigMapEnvSource": {"name": ""},
    "io.k8s.api.core.v1.ConfigMapKeySelector": {"name": ""},
    "io.k8s.api.core.v1.ConfigMapProjection": {"name": ""},
    "io.k8s.api.core.v1.ConfigMapVolumeSource": {"name": ""},
    "io.k8s.api.core.v1.ContainerPort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.FileKeySelector": {"optional": False},
    "io.k8s.api.core.v1.GRPCAction": {"service": ""},
    "io.k8s.api.core.v1.ISCSIVolumeSource": {"iscsiInterface": "default"},
    "io.k8s.api.core.v1.LocalObjectReference": {"name": ""},
    "io.k8s.api.core.v1.RBDVolumeSource": {"keyring": "/etc/ceph/keyring", "pool": "rbd", "user": "admin"},
    "io.k8s.api.core.v1.ScaleIOVolumeSource": {"fsType": "xfs", "storageMode": "ThinProvisioned"},
    "io.k8s.api.core.v1.SecretEnvSource": {"name": ""},
    "io.k8s.api.core.v1.SecretKeySelector": {"name": ""},
    "io.k8s.api.core.v1.SecretProjection": {"name": ""},
    "io.k8s.api.core.v1.ServicePort": {"protocol": "TCP"},
}
# Types whose Go definition carries +structType=atomic where the JSON schemas have no x-kubernetes-map-type.
KNOWN_ATOMIC = {
    "io.k8s.api.core.v1.ConfigMapEnvSource",
    "io.k8s.api.core.v1.ConfigMapProjection",
    "io.k8s.api.core.v1.ConfigMapVolumeSource",
    "io.k8s.api.core.v1.SecretEnvSource",
    "io.k8s.api.core.v1.SecretProjection",
}
MAX_DEPTH = 40


def load_definitions() -> dict:
    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / K8S_SCHEMA_DIR / "_definitions.json"
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["$defs"]


def _type_of(schema: dict) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if kinds else None
    return kind


def int_or_string(pattern: str | None = None) -> dict:
    out = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    if pattern:
        out["pattern"] = pattern
    return out


def template_metadata() -> dict:
    """What controller-gen keeps of ObjectMeta inside an embedded pod template."""
    string_map = {"additionalProperties": {"type": "string"}, "type": "object"}
    return {
        "properties": {
            "annotations": copy.deepcopy(string_map),
            "finalizers": {"items": {"type": "string"}, "type": "array"},
            "labels": copy.deepcopy(string_map),
            "name": {"type": "string"},
            "namespace": {"type": "string"},
        },
        "type": "object",
    }


class Converter:
    """Turns kubernetes-validate's JSON schema definitions into OpenAPI v3 structural schemas."""

    def __init__(self, definitions: dict):
        self.defs = definitions

    def definition(self, name: str) -> dict:
        return self.convert({"$ref": "#/$defs/" + name}, ())

    def convert(self, schema: dict, stack: tuple, def_name: str | None = None) -> dict:
        if len(stack) > MAX_DEPTH:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            special = self._special(name)
            if special is not None:
                return special
            if name in stack:  # recursive type: stop here, keep whatever is below
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            return self.convert(self.defs[name], (*stack, name), name)
        out: dict = {}
        kind = _type_of(schema)
        if kind:
            out["type"] = kind
        fmt = schema.get("format")
        if fmt in OPENAPI_FORMATS:
            out["format"] = fmt
        for key in KEPT_KEYS:
            if key in schema:
                out[key] = copy.deepcopy(schema[key])
        if "properties" in schema:
            defaults = KNOWN_DEFAULTS.get(def_name or "", {})
            props = {}
            for prop, sub in schema["properties"].items():
                converted = self.convert(sub, stack)
                if prop in ("apiVersion", "kind") and "x-kubernetes-group-version-kind" in schema:
                    converted.pop("enum", None)  # controller-gen types them as plain strings
                if prop in defaults:
                    converted["default"] = defaults[prop]
                props[prop] = converted
            out["properties"] = props
        if isinstance(schema.get("additionalProperties"), dict):
            out["additionalProperties"] = self.convert(schema["additionalProperties"], stack)
        if "items" in schema:
            out["items"] = self.convert(schema["items"], stack)
        if schema.get("required"):
            out["required"] = sorted(schema["required"])
        if def_name in KNOWN_ATOMIC:
            out["x-kubernetes-map-type"] = "atomic"
        if "oneOf" in schema:  # only IntOrString-like unions use it
            return int_or_string()
        if "type" not in out and "x-kubernetes-int-or-string" not in out:
            out["type"] = "object"
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    @staticmethod
    def _special(name: str) -> dict | None:
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            return int_or_string()
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return int_or_string(QUANTITY_PATTERN)
        if name in ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"):
            return {"format": "date-time", "type": "string"}
        if name == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":
            return template_metadata()
        if name == "io.k8s.apimachinery.pkg.apis.meta.v1.Condition":
            return condition()
        if name == "io.k8s.api.core.v1.PortStatus":
            return port_status()
        return None


# --- small schema helpers ------------------------------------------------------------------------------------------


def obj(properties: dict | None = None, required: list | None = None, **extra) -> dict:
    out: dict = {"type": "object"}
    if properties is not None:
        out["properties"] = properties
    if required:
        out["required"] = sorted(required)
    out.update(extra)
    return out


def loose() -> dict:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def string(**extra) -> dict:
    return {"type": "string", **extra}


def boolean() -> dict:
    return {"type": "boolean"}


def int32(**extra) -> dict:
    return {"format": "int32", "type": "integer", **extra}


def int64(**extra) -> dict:
    return {"format": "int64", "type": "integer", **extra}


def string_map() -> dict:
    return {"additionalProperties": {"type": "string"}, "type": "object"}


def array(items: dict, **extra) -> dict:
    return {"items": items, "type": "array", **extra}


def date_time(**extra) -> dict:
    return {"format": "date-time", "type": "string", **extra}


# metav1.Condition's type and the Service PortStatus error: a qualified name (their +kubebuilder:validation markers).
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)


def condition() -> dict:
    """metav1.Condition, as controller-gen renders it (the JSON schemas lack its validation markers)."""
    return obj(
        {
            "lastTransitionTime": date_time(),
            "message": string(maxLength=32768),
            "observedGeneration": int64(minimum=0),
            "reason": string(maxLength=1024, minLength=1, pattern="^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
            "status": string(enum=["True", "False", "Unknown"]),
            "type": string(maxLength=316, pattern=QUALIFIED_NAME),
        },
        ["lastTransitionTime", "message", "reason", "status", "type"],
    )


def conditions() -> dict:
    return array(condition(), **{"x-kubernetes-list-map-keys": ["type"], "x-kubernetes-list-type": "map"})


def port_status() -> dict:
    """core/v1 PortStatus: controller-gen keeps its markers (error required, a qualified name)."""
    return obj(
        {"error": string(maxLength=316, pattern=QUALIFIED_NAME), "port": int32(), "protocol": string()},
        ["error", "port", "protocol"],
    )


# --- KubeRay v1.7.0: ray.io/v1 (stored) and the deprecated ray.io/v1alpha1 -----------------------------------------
#
# Written from ray-operator/apis/ray/{v1,v1alpha1}/*_types.go at KubeRay v1.7.0 (the Go types and their kubebuilder
# markers); the CRD equality test (tests/k8s_testbed_tests/test_kuberay_crds.py) proves the result field for field.

KUBERAY_VERSION = "v1.7.0"
MANAGED_BY_RULES = [
    {"message": "the managedBy field is immutable", "rule": "self == oldSelf"},
    {
        "message": "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
        "rule": "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']",
    },
]
DELETION_POLICIES = ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]


def quantity() -> dict:
    return int_or_string(QUANTITY_PATTERN)


def cel(schema: dict, *rules: dict) -> dict:
    """A schema with x-kubernetes-validations (CEL rules: stored, not evaluated by the test bed)."""
    return {**schema, "x-kubernetes-validations": list(rules)}


def rule(message: str, expression: str) -> dict:
    return {"message": message, "rule": expression}


class KubeRay:
    """The ray.io/v1 schemas; the pod template and the Service are written once per file (YAML anchors)."""

    def __init__(self, conv: Converter, shared: dict):
        self.conv = conv
        self.shared = shared  # name -> schema, shared by every version of one CRD

    def _shared(self, name: str, build) -> dict:
        if name not in self.shared:
            self.shared[name] = build()
            SHARED[id(self.shared[name])] = name
        return self.shared[name]

    def pod_template(self) -> dict:
        return self._shared("pod_template", lambda: self.core("PodTemplateSpec"))

    def service(self) -> dict:
        return self._shared("service", lambda: self.core("Service"))

    def core(self, name: str) -> dict:
        return self.conv.definition("io.k8s.api.core.v1." + name)

    def networking(self, name: str) -> dict:
        return self.conv.definition("io.k8s.api.networking.v1." + name)

    # -- RayCluster ---------------------------------------------------------------------------------------------

    def autoscaler_options(self) -> dict:
        return obj(
            {
                "args": array(string()),
                "command": array(string()),
                "env": array(self.core("EnvVar")),
                "envFrom": array(self.core("EnvFromSource")),
                "idleTimeoutSeconds": int32(),
                "image": string(),
                "imagePullPolicy": string(),
                "resources": self.core("ResourceRequirements"),
                "securityContext": self.core("SecurityContext"),
                "upscalingMode": string(enum=["Default", "Aggressive", "Conservative"]),
                "version": string(enum=["v1", "v2"]),
                "volumeMounts": array(self.core("VolumeMount")),
            }
        )

    def redis_credential(self) -> dict:
        return obj({"value": string(), "valueFrom": self.core("EnvVarSource")})

    def gcs_fault_tolerance(self) -> dict:
        storage = obj(
            {
                "accessModes": array(string()),
                "claimName": string(),
                "deletionPolicy": string(enum=["DeleteWithCluster", "Retain"]),
                "size": quantity(),
                "storageClassName": string(),
                "subPath": string(),
            }
        )
        return obj(
            {
                "backend": cel(
                    string(enum=["redis", "rocksdb"]),
                    rule("gcsFaultToleranceOptions.backend is immutable", "self == oldSelf"),
                ),
                "externalStorageNamespace": string(),
                "redisAddress": string(),
                "redisPassword": self.redis_credential(),
                "redisUsername": self.redis_credential(),
                "storage": storage,
            }
        )

    def ingress_options(self) -> dict:
        return obj(
            {
                "host": string(),
                "path": string(),
                "pathType": string(enum=["Exact", "Prefix", "ImplementationSpecific"]),
                "tls": array(self.networking("IngressTLS")),
            }
        )

    def head_group_spec(self) -> dict:
        return obj(
            {
                "enableIngress": boolean(),
                "headService": self.service(),
                "ingressOptions": self.ingress_options(),
                "labels": string_map(),
                "rayStartParams": string_map(),
                "resources": string_map(),
                "serviceType": string(),
                "template": self.pod_template(),
            },
            ["template"],
        )

    def worker_group_spec(self) -> dict:
        return obj(
            {
                "groupName": string(),
                "idleTimeoutSeconds": int32(),
                "labels": string_map(),
                "maxReplicas": int32(default=2147483647),
                "minReplicas": int32(default=0),
                "numOfHosts": int32(default=1),
                "priority": int32(default=0),
                "rayStartParams": string_map(),
                "replicas": int32(default=0),
                "resources": string_map(),
                "scaleStrategy": obj({"workersToDelete": array(string())}),
                "suspend": boolean(),
                "template": self.pod_template(),
            },
            ["groupName", "maxReplicas", "minReplicas", "template"],
        )

    def network_policy_rules(self) -> dict:
        return {
            "egressRules": array(self.networking("NetworkPolicyEgressRule")),
            "ingressRules": array(self.networking("NetworkPolicyIngressRule")),
        }

    def network_policy(self) -> dict:
        group = obj({"groupName": string(), **self.network_policy_rules()}, ["groupName"])
        return obj(
            {
                "head": obj(self.network_policy_rules()),
                "mode": string(default="DenyAll", enum=["DenyAll", "DenyAllIngress", "DenyAllEgress"]),
                "worker": obj(self.network_policy_rules()),
                "workerGroups": array(
                    group, **{"x-kubernetes-list-map-keys": ["groupName"], "x-kubernetes-list-type": "map"}
                ),
            }
        )

    def history_server_options(self) -> dict:
        collector = obj(
            {
                "env": array(self.core("EnvVar")),
                "image": string(),
                "imagePullPolicy": string(),
                "resources": self.core("ResourceRequirements"),
            }
        )
        return obj({"collectorOptions": collector})

    def cluster_spec(self) -> dict:
        return obj(
            {
                "authOptions": obj(
                    {
                        "enableK8sTokenAuth": boolean(),
                        "mode": string(enum=["disabled", "token"]),
                        "secretName": string(),
                    }
                ),
                "autoscalerOptions": self.autoscaler_options(),
                "enableInTreeAutoscaling": boolean(),
                "gcsFaultToleranceOptions": self.gcs_fault_tolerance(),
                "headGroupSpec": self.head_group_spec(),
                "headServiceAnnotations": string_map(),
                "historyServerOptions": self.history_server_options(),
                "managedBy": cel(string(), *MANAGED_BY_RULES),
                "networkPolicy": self.network_policy(),
                "rayVersion": string(),
                "suspend": boolean(),
                "tlsOptions": obj({"enabled": boolean()}),
                "upgradeStrategy": obj({"type": string(enum=["Recreate", "None"])}),
                "workerGroupSpecs": array(self.worker_group_spec()),
            },
            ["headGroupSpec"],
        )

    @staticmethod
    def head_info() -> dict:
        return obj({"podIP": string(), "podName": string(), "serviceIP": string(), "serviceName": string()})

    def cluster_status(self) -> dict:
        return obj(
            {
                "availableWorkerReplicas": int32(),
                "conditions": conditions(),
                "desiredCPU": quantity(),
                "desiredGPU": quantity(),
                "desiredMemory": quantity(),
                "desiredTPU": quantity(),
                "desiredWorkerReplicas": int32(),
                "endpoints": string_map(),
                "head": self.head_info(),
                "lastUpdateTime": date_time(nullable=True),
                "maxWorkerReplicas": int32(),
                "minWorkerReplicas": int32(),
                "observedGeneration": int64(),
                "readyWorkerReplicas": int32(),
                "reason": string(),
                "state": string(),
                "stateTransitionTimes": {"additionalProperties": date_time(), "type": "object"},
            }
        )

    # -- RayJob -------------------------------------------------------------------------------------------------

    @staticmethod
    def deletion_strategy() -> dict:
        policy = obj({"policy": string(enum=DELETION_POLICIES)})
        condition = cel(
            obj(
                {
                    "jobDeploymentStatus": string(enum=["Failed"]),
                    "jobStatus": string(enum=["SUCCEEDED", "FAILED"]),
                    "ttlSeconds": int32(default=0, minimum=0),
                }
            ),
            rule(
                "JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition.",
                "!(has(self.jobStatus) && has(self.jobDeploymentStatus))",
            ),
            rule(
                "the deletion condition requires either the JobStatus or the JobDeploymentStatus field.",
                "has(self.jobStatus) || has(self.jobDeploymentStatus)",
            ),
        )
        deletion_rule = obj({"condition": condition, "policy": string(enum=DELETION_POLICIES)}, ["condition", "policy"])
        return cel(
            obj(
                {
                    "deletionRules": array(deletion_rule, minItems=1, **{"x-kubernetes-list-type": "atomic"}),
                    "onFailure": policy,
                    "onSuccess": copy.deepcopy(policy),
                }
            ),
            rule(
                "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together within the same "
                "deletionStrategy",
                "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",
            ),
            rule(
                "deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field "
                "(cannot be empty)",
                "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",
            ),
        )

    def job_spec(self) -> dict:
        return obj(
            {
                "activeDeadlineSeconds": int32(),
                "backoffLimit": int32(default=0),
                "clusterSelector": string_map(),
                "deletionStrategy": self.deletion_strategy(),
                "entrypoint": string(),
                "entrypointNumCpus": {"type": "number"},
                "entrypointNumGpus": {"type": "number"},
                "entrypointResources": string(),
                "jobId": string(),
                "managedBy": cel(string(), *MANAGED_BY_RULES),
                "metadata": string_map(),
                "preRunningDeadlineSeconds": int32(minimum=1),
                "rayClusterSpec": self.cluster_spec(),
                "runtimeEnvYAML": string(),
                "shutdownAfterJobFinishes": boolean(),
                "submissionMode": string(default="K8sJobMode"),
                "submitterConfig": obj({"backoffLimit": int32()}),
                "submitterPodTemplate": self.pod_template(),
                "suspend": boolean(),
                "ttlSecondsAfterFinished": int32(default=0),
            }
        )

    def job_status(self) -> dict:
        return obj(
            {
                "dashboardURL": string(),
                "endTime": date_time(),
                "failed": int32(default=0),
                "jobDeploymentStatus": string(),
                "jobId": string(),
                "jobStatus": string(),
                "jobStatusCheckFailureStartTime": date_time(),
                "message": string(),
                "observedGeneration": int64(),
                "rayClusterName": string(),
                "rayClusterStatus": self.cluster_status(),
                "rayJobInfo": obj({"endTime": date_time(), "startTime": date_time()}),
                "reason": string(),
                "startTime": date_time(),
                "succeeded": int32(default=0),
            }
        )

    # -- RayCronJob (v1 only; the operator reconciles it behind the RayCronJob feature gate) ------------------------

    def cron_job_spec(self) -> dict:
        return obj(
            {
                "jobTemplate": self.job_spec(),
                "schedule": string(),
                "suspend": boolean(),
                "timeZone": string(minLength=1),
            },
            ["jobTemplate", "schedule"],
        )

    @staticmethod
    def cron_job_status() -> dict:
        return obj({"lastScheduleTime": date_time()})

    # -- RayService ---------------------------------------------------------------------------------------------

    def service_spec(self) -> dict:
        upgrade_options = obj(
            {
                "gatewayClassName": string(),
                "intervalSeconds": int32(),
                "maxSurgePercent": int32(default=100),
                "stepSizePercent": int32(),
            },
            ["gatewayClassName", "intervalSeconds", "stepSizePercent"],
        )
        return obj(
            {
                "deploymentUnhealthySecondThreshold": int32(),
                "excludeHeadPodFromServeSvc": boolean(),
                "managedBy": cel(string(), *MANAGED_BY_RULES),
                "rayClusterConfig": self.cluster_spec(),
                "rayClusterDeletionDelaySeconds": int32(minimum=0),
                "serveConfigV2": string(),
                "serveService": self.service(),
                "serviceUnhealthySecondThreshold": int32(),
                "suspend": boolean(),
                "upgradeStrategy": obj({"clusterUpgradeOptions": upgrade_options, "type": string()}),
            },
            ["rayClusterConfig"],
        )

    @staticmethod
    def app_status(extra: dict | None = None) -> dict:
        deployment = obj({"message": string(), "status": string(), **(extra or {})})
        return obj(
            {
                "message": string(),
                "serveDeploymentStatuses": {"additionalProperties": deployment, "type": "object"},
                "status": string(),
                **copy.deepcopy(extra or {}),
            }
        )

    def serve_status(self) -> dict:
        return obj(
            {
                "applicationStatuses": {"additionalProperties": self.app_status(), "type": "object"},
                "lastTrafficMigratedTime": date_time(),
                "rayClusterName": string(),
                "rayClusterStatus": self.cluster_status(),
                "targetCapacity": int32(),
                "trafficRoutedPercent": int32(),
            }
        )

    def service_status(self) -> dict:
        return obj(
            {
                "activeServiceStatus": self.serve_status(),
                "conditions": conditions(),
                "lastUpdateTime": date_time(),
                "numServeEndpoints": int32(),
                "observedGeneration": int64(),
                "pendingServiceStatus": self.serve_status(),
                "serviceStatus": string(),
            }
        )


class KubeRayAlpha(KubeRay):
    """The ray.io/v1alpha1 schemas: the v1 types as they were frozen ("v1alpha1 receives no new fields")."""

    def autoscaler_options(self) -> dict:
        options = super().autoscaler_options()
        for name in ("args", "command", "version"):
            del options["properties"][name]
        return options

    def head_group_spec(self) -> dict:
        return obj(
            {
                "enableIngress": boolean(),
                "headService": self.service(),
                "rayStartParams": string_map(),
                "serviceType": string(),
                "template": self.pod_template(),
            },
            ["rayStartParams", "template"],
        )

    def worker_group_spec(self) -> dict:
        return obj(
            {
                "groupName": string(),
                "maxReplicas": int32(default=2147483647),
                "minReplicas": int32(default=0),
                "rayStartParams": string_map(),
                "replicas": int32(default=0),
                "scaleStrategy": obj({"workersToDelete": array(string())}),
                "template": self.pod_template(),
            },
            ["groupName", "maxReplicas", "minReplicas", "rayStartParams", "template"],
        )

    def cluster_spec(self) -> dict:
        return obj(
            {
                "autoscalerOptions": self.autoscaler_options(),
                "enableInTreeAutoscaling": boolean(),
                "headGroupSpec": self.head_group_spec(),
                "headServiceAnnotations": string_map(),
                "rayVersion": string(),
                "suspend": boolean(),
                "workerGroupSpecs": array(self.worker_group_spec()),
            },
            ["headGroupSpec"],
        )

    def cluster_status(self) -> dict:
        status = super().cluster_status()
        for name in ("conditions", "stateTransitionTimes"):
            del status["properties"][name]
        status["properties"]["head"] = obj({"podIP": string(), "serviceIP": string()})
        return status

    def job_spec(self) -> dict:
        return obj(
            {
                "clusterSelector": string_map(),
                "entrypoint": string(),
                "entrypointNumCpus": {"type": "number"},
                "entrypointNumGpus": {"type": "number"},
                "entrypointResources": string(),
                "jobId": string(),
                "metadata": string_map(),
                "rayClusterSpec": self.cluster_spec(),
                "runtimeEnvYAML": string(),
                "shutdownAfterJobFinishes": boolean(),
                "submitterPodTemplate": self.pod_template(),
                "suspend": boolean(),
                "ttlSecondsAfterFinished": int32(default=0),
            },
            ["entrypoint"],
        )

    def job_status(self) -> dict:
        status = super().job_status()
        for name in ("failed", "jobStatusCheckFailureStartTime", "rayJobInfo", "reason", "succeeded"):
            del status["properties"][name]
        return status

    def service_spec(self) -> dict:
        return obj(
            {
                "deploymentUnhealthySecondThreshold": int32(),
                "rayClusterConfig": self.cluster_spec(),
                "serveConfigV2": string(),
                "serveService": self.service(),
                "serviceUnhealthySecondThreshold": int32(),
            }
        )

    def serve_status(self) -> dict:
        app = self.app_status({"healthLastUpdateTime": date_time()})
        return obj(
            {
                "applicationStatuses": {"additionalProperties": app, "type": "object"},
                "rayClusterName": string(),
                "rayClusterStatus": self.cluster_status(),
            }
        )

    def service_status(self) -> dict:
        status = super().service_status()
        for name in ("conditions", "numServeEndpoints"):
            del status["properties"][name]
        return status


def root_schema(spec: dict, status: dict) -> dict:
    return obj(
        {"apiVersion": string(), "kind": string(), "metadata": {"type": "object"}, "spec": spec, "status": status}
    )


def printer_columns(columns: list) -> list:
    return [
        {"jsonPath": path, "name": name, "type": kind, **({"priority": 1} if wide else {})}
        for name, kind, path, wide in columns
    ]


def version(name: str, schema: dict, columns: list = (), storage: bool = True, deprecation: str = "") -> dict:
    entry = {"name": name, "served": True, "storage": storage, "schema": {"openAPIV3Schema": schema}}
    entry["subresources"] = {"status": {}}
    if columns:
        entry["additionalPrinterColumns"] = printer_columns(columns)
    if deprecation:
        entry.update(deprecated=True, deprecationWarning=deprecation)
    return entry


def crd(group: str, kind: str, plural: str, scope: str, versions: list, categories=None) -> dict:
    names = {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()}
    if categories:
        names["categories"] = list(categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "names": names, "scope": scope, "versions": versions},
    }


def alpha_deprecation(kind: str) -> str:
    return (
        f"ray.io/v1alpha1 {kind} is deprecated; use ray.io/v1 {kind}. "
        "v1alpha1 receives no new fields and will be unavailable in KubeRay 1.9."
    )


CLUSTER_COLUMNS = [
    ("desired workers", "integer", ".status.desiredWorkerReplicas", False),
    ("available workers", "integer", ".status.availableWorkerReplicas", False),
    ("cpus", "string", ".status.desiredCPU", False),
    ("memory", "string", ".status.desiredMemory", False),
    ("gpus", "string", ".status.desiredGPU", False),
    ("tpus", "string", ".status.desiredTPU", True),
    ("status", "string", ".status.state", False),
    ("age", "date", ".metadata.creationTimestamp", False),
    ("head pod IP", "string", ".status.head.podIP", True),
    ("head service IP", "string", ".status.head.serviceIP", True),
]
JOB_COLUMNS = [
    ("job status", "string", ".status.jobStatus", False),
    ("deployment status", "string", ".status.jobDeploymentStatus", False),
    ("ray cluster name", "string", ".status.rayClusterName", False),
    ("start time", "string", ".status.startTime", False),
    ("end time", "string", ".status.endTime", False),
    ("age", "date", ".metadata.creationTimestamp", False),
]
CRON_JOB_COLUMNS = [
    ("schedule", "string", ".spec.schedule", False),
    ("timezone", "string", ".spec.timeZone", False),
    ("last schedule", "date", ".status.lastScheduleTime", False),
    ("age", "date", ".metadata.creationTimestamp", False),
    ("suspend", "boolean", ".spec.suspend", False),
]
SERVICE_COLUMNS = [
    ("service status", "string", ".status.serviceStatus", False),
    ("num serve endpoints", "string", ".status.numServeEndpoints", False),
]
# kind -> (plural, spec and status builders, v1 printer columns, v1alpha1: None when not served, else whether it
# has the v1 columns)
KUBERAY_KINDS = {
    "RayCluster": ("rayclusters", "cluster_spec", "cluster_status", CLUSTER_COLUMNS, True),
    "RayCronJob": ("raycronjobs", "cron_job_spec", "cron_job_status", CRON_JOB_COLUMNS, None),
    "RayJob": ("rayjobs", "job_spec", "job_status", JOB_COLUMNS, False),
    "RayService": ("rayservices", "service_spec", "service_status", SERVICE_COLUMNS, False),
}


def kuberay_crd(conv: Converter, kind: str) -> dict:
    plural, spec, status, columns, alpha_columns = KUBERAY_KINDS[kind]
    shared: dict = {}
    stable, alpha = KubeRay(conv, shared), KubeRayAlpha(conv, shared)
    versions = [version("v1", root_schema(getattr(stable, spec)(), getattr(stable, status)()), columns)]
    if alpha_columns is not None:
        versions.append(
            version(
                "v1alpha1",
                root_schema(getattr(alpha, spec)(), getattr(alpha, status)()),
                columns if alpha_columns else (),
                storage=False,
                deprecation=alpha_deprecation(kind),
            )
        )
    return crd("ray.io", kind, plural, "Namespaced", versions, ["all"])


def kuberay_crds(conv: Converter) -> dict:
    return {f"ray.io_{KUBERAY_KINDS[kind][0]}.yaml": kuberay_crd(conv, kind) for kind in KUBERAY_KINDS}


# --- NVIDIA GPU operator ------------------------------------------------------------------------------------------

# The ClusterPolicy sections that the collection's gpu_operator role reads; the operator's own CRD types each of them
# in full, here they keep unknown fields and only the switches that matter for verification are typed.
GPU_OPERATOR_REQUIRED = (
    "daemonsets",
    "dcgm",
    "dcgmExporter",
    "devicePlugin",
    "driver",
    "gfd",
    "nodeStatusExporter",
    "operator",
    "toolkit",
)
GPU_OPERATOR_COMPONENTS = (
    "ccManager",
    "dcgm",
    "dcgmExporter",
    "devicePlugin",
    "driver",
    "gdrcopy",
    "gds",
    "gfd",
    "kataManager",
    "kataSandboxDevicePlugin",
    "migManager",
    "nodeStatusExporter",
    "sandboxDevicePlugin",
    "toolkit",
    "vfioManager",
    "vgpuDeviceManager",
    "vgpuManager",
)


def gpu_component(extra: dict | None = None) -> dict:
    props = {
        "args": array(string()),
        "enabled": boolean(),
        "env": loose_array(),
        "hostNetwork": boolean(),
        "image": string(pattern="[a-zA-Z0-9\\-]+"),
        "imagePullPolicy": string(),
        "imagePullSecrets": array(string()),
        "repository": string(),
        "resources": loose(),
        "version": string(),
    }
    props.update(extra or {})
    return obj(props, **{"x-kubernetes-preserve-unknown-fields": True})


def loose_array() -> dict:
    return array(loose())


def cluster_policy_crd() -> dict:
    sections = {name: gpu_component() for name in GPU_OPERATOR_COMPONENTS}
    sections["driver"]["properties"].update(
        {
            "kernelModuleType": string(default="auto", enum=["auto", "open", "proprietary"]),
            "useNvidiaDriverCRD": boolean(),
            "useOpenKernelModules": boolean(),
            "usePrecompiled": boolean(),
        }
    )
    sections["toolkit"]["properties"]["installDir"] = string(default="/usr/local/nvidia")
    sections["dcgm"]["properties"]["hostPort"] = int32()
    sections["dcgmExporter"]["properties"].update(
        {
            "serviceMonitor": obj(
                {
                    "additionalLabels": string_map(),
                    "enabled": boolean(),
                    "honorLabels": boolean(),
                    "interval": string(
                        pattern="^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
                    ),
                    "relabelings": loose_array(),
                    "scrapeTimeout": string(),
                },
                **{"x-kubernetes-preserve-unknown-fields": True},
            ),
        }
    )
    sections["validator"] = gpu_component()
    del sections["validator"]["properties"]["enabled"]
    sections.update(
        {
            "cdi": obj({"default": boolean(), "enabled": boolean()}, **{"x-kubernetes-preserve-unknown-fields": True}),
            "daemonsets": obj(
                {
                    "annotations": string_map(),
                    "labels": string_map(),
                    "priorityClassName": string(),
                    "tolerations": loose_array(),
                    "updateStrategy": string(default="RollingUpdate", enum=["RollingUpdate", "OnDelete"]),
                },
                **{"x-kubernetes-preserve-unknown-fields": True},
            ),
            "hostPaths": obj({"driverInstallDir": string(), "rootFS": string()}),
            "mig": obj({"strategy": string(enum=["none", "single", "mixed"])}),
            "operator": obj(
                {
                    "annotations": string_map(),
                    "defaultRuntime": string(),
                    "labels": string_map(),
                    "runtimeClass": string(default="nvidia"),
                    "use_ocp_driver_toolkit": boolean(),
                },
                **{"x-kubernetes-preserve-unknown-fields": True},
            ),
            "psa": obj({"enabled": boolean()}),
            "psp": obj({"enabled": boolean()}),
            "sandboxWorkloads": loose(),
        }
    )
    schema = obj(
        {
            "apiVersion": string(),
            "kind": string(),
            "metadata": {"type": "object"},
            "spec": obj(sections, list(GPU_OPERATOR_REQUIRED)),
            "status": obj(
                {
                    "conditions": conditions(),
                    "namespace": string(),
                    "state": string(enum=["ignored", "ready", "notReady"]),
                },
                ["state"],
            ),
        },
        description="ClusterPolicy is the Schema for the clusterpolicies API of the NVIDIA GPU operator",
    )
    return crd(
        "nvidia.com",
        "ClusterPolicy",
        "clusterpolicies",
        "Cluster",
        [
            version(
                "v1",
                schema,
                [("Status", "string", ".status.state", False), ("Age", "string", ".metadata.creationTimestamp", False)],
            )
        ],
    )


# --- output ---------------------------------------------------------------------------------------------------------


# id() of the schema objects that are written once with an anchor and then referred to by alias.
SHARED: dict = {}


class _Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key (yamllint's default); only SHARED nodes become anchors."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data):
        return id(data) not in SHARED

    def generate_anchor(self, node):
        for key, value in self.represented_objects.items():
            if value is node and key in SHARED:
                return SHARED[key]
        return super().generate_anchor(node)


HEADER = "# Generated by generate_crds.py; do not edit.\n"


MAX_LINE = 160
_LONG_SCALAR = re.compile(r"^(\s*)((?:- )?[A-Za-z0-9_.-]+:) (\S+)$")


def _wrap(line: str) -> str:
    """Put a long scalar without spaces on its own line (yamllint allows a non-breakable word to overflow)."""
    match = _LONG_SCALAR.match(line) if len(line) > MAX_LINE else None
    if not match:
        return line
    indent, key, value = match.groups()
    inner = indent + ("  " if key.startswith("- ") else "") + "  "
    return f"{indent}{key}\n{inner}{value}"


def render(document: dict) -> str:
    body = yaml.dump(document, Dumper=_Dumper, default_flow_style=False, sort_keys=True, width=150, indent=2)
    text = "---\n" + HEADER + "\n".join(_wrap(line) for line in body.split("\n"))
    if yaml.safe_load(text) != document:
        raise AssertionError("rendered YAML does not load back to the same document")
    return text


def main(argv: list) -> int:
    check = "--check" in argv
    conv = Converter(load_definitions())
    stale = []
    documents = kuberay_crds(conv)
    documents["nvidia.com_clusterpolicies.yaml"] = cluster_policy_crd()
    for filename, document in sorted(documents.items()):
        text = render(document)
        path = HERE / filename
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(filename)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(text)} bytes)")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
