# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the API-server emulator's admission validation (CRD structural schemas and built-in kinds)."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import validation

CRDS = {Path(path).name: validation.load_crd(path) for path in validation.crd_files()}


def schema_of(filename: str) -> dict:
    return validation.crd_schema(CRDS[filename])


RAYCLUSTER = schema_of("ray.io_rayclusters.yaml")


def container(name: str, gpus: int | None = None) -> dict:
    resources = {"requests": {"cpu": "8", "memory": "16Gi"}, "limits": {"cpu": 8, "memory": "16Gi"}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = gpus
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
    return {
        "name": name,
        "image": "rayproject/ray:2.49.0-py311-gpu",
        "ports": [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"}],
        "env": [
            {"name": "RAY_NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        ],
        "resources": resources,
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "models", "mountPath": "/models"}],
    }


def pod_template(name: str, gpus: int | None = None) -> dict:
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": "vllm"}, "annotations": {"example.com/note": "x"}},
        "spec": {
            "containers": [container(name, gpus)],
            "volumes": [
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
                {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
            ],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
        },
    }


def raycluster() -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "vllm", "namespace": "llm", "labels": {"app": "vllm"}},
        "spec": {
            "rayVersion": "2.49.0",
            "enableInTreeAutoscaling": False,
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
                "template": pod_template("ray-head"),
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu",
                    "replicas": 2,
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "rayStartParams": {},
                    "template": pod_template("ray-worker", gpus=8),
                }
            ],
        },
    }


def crv(obj: dict, mode: str = "Strict", schema: dict = RAYCLUSTER):
    return validation.validate_custom_resource(obj, schema, mode)


def fields(errors: list) -> list:
    return [e["field"] for e in errors]


# --- CRD files --------------------------------------------------------------------------------------------------


def test_bundled_crds_are_structural_v1_crds():
    assert set(CRDS) == {
        "ray.io_rayclusters.yaml",
        "ray.io_raycronjobs.yaml",
        "ray.io_rayjobs.yaml",
        "ray.io_rayservices.yaml",
        "nvidia.com_clusterpolicies.yaml",
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
    }
    for filename, crd in CRDS.items():
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        versions = [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]]
        # KubeRay 1.7 still serves the deprecated v1alpha1 (not stored); RayCronJob and the ClusterPolicy are v1 only.
        alpha = filename.startswith("ray.io") and filename != "ray.io_raycronjobs.yaml"
        expected = [("v1", True, True)] + ([("v1alpha1", True, False)] if alpha else [])
        assert versions == expected
        assert all(v["subresources"] == {"status": {}} for v in crd["spec"]["versions"])
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    assert CRDS["nvidia.com_clusterpolicies.yaml"]["spec"]["scope"] == "Cluster"
    assert CRDS["ray.io_rayclusters.yaml"]["spec"]["scope"] == "Namespaced"


def test_crd_template_is_full_pod_template_spec():
    template = RAYCLUSTER["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]["template"]
    pod_spec = template["properties"]["spec"]
    assert pod_spec["required"] == ["containers"]
    container_props = pod_spec["properties"]["containers"]["items"]["properties"]
    assert {"livenessProbe", "securityContext", "volumeMounts", "resources"} <= set(container_props)
    assert container_props["ports"]["items"]["properties"]["protocol"]["default"] == "TCP"
    assert template["properties"]["metadata"]["properties"]["labels"]["additionalProperties"] == {"type": "string"}


def test_generated_crds_are_up_to_date():
    script = Path(validation.CRD_DIR) / "generate_crds.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- custom resources ---------------------------------------------------------------------------------------------


def test_valid_raycluster_passes_and_is_defaulted():
    obj = raycluster()
    result, errors, warnings = crv(obj)
    assert errors == []
    assert warnings == []
    worker = result["spec"]["workerGroupSpecs"][0]
    assert worker["numOfHosts"] == 1
    assert worker["template"]["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert "numOfHosts" not in obj["spec"]["workerGroupSpecs"][0], "the input must not be modified"


def test_defaults_fill_in_min_and_max_replicas():
    obj = raycluster()
    del obj["spec"]["workerGroupSpecs"][0]["minReplicas"]
    del obj["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    result, errors, dummy = crv(obj)
    assert errors == []
    assert result["spec"]["workerGroupSpecs"][0]["minReplicas"] == 0
    assert result["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 2147483647


@pytest.mark.parametrize(
    "where, path",
    [
        (lambda o: o["spec"], "spec.foo"),
        (lambda o: o["spec"]["workerGroupSpecs"][0], "spec.workerGroupSpecs[0].foo"),
        (
            lambda o: o["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0],
            "spec.workerGroupSpecs[0].template.spec.containers[0].foo",
        ),
        (lambda o: o["metadata"], "metadata.foo"),
    ],
)
def test_unknown_field_strict_warn_ignore(where, path):
    obj = raycluster()
    where(obj)["foo"] = "bar"

    dummy, errors, warnings = crv(obj, "Strict")
    assert errors == [{"reason": "FieldValueInvalid", "message": f'unknown field "{path}"', "field": path}]
    assert validation.is_unknown_field(errors[0])
    assert warnings == []

    result, errors, warnings = crv(obj, "Warn")
    assert errors == []
    assert warnings == [f'unknown field "{path}"']
    assert "foo" not in where(result)

    result, errors, warnings = crv(obj, "Ignore")
    assert (errors, warnings) == ([], [])
    assert "foo" not in where(result)


def test_head_service_is_a_typed_service():
    """KubeRay 1.7 types headService as a core/v1 Service (1.4's test bed kept unknown fields there)."""
    obj = raycluster()
    service_spec = {"ports": [{"name": "serve", "port": 8000}], "anything": [1, 2]}
    obj["spec"]["headGroupSpec"]["headService"] = {"metadata": {"name": "x"}, "spec": service_spec}
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["spec.headGroupSpec.headService.spec.anything"]
    del service_spec["anything"]
    result, errors, dummy = crv(obj)
    assert errors == []
    assert result["spec"]["headGroupSpec"]["headService"]["spec"]["ports"] == [
        {"name": "serve", "port": 8000, "protocol": "TCP"}
    ]


def test_preserve_unknown_fields_keeps_unknown_fields():
    policy = {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "metadata": {"name": "cluster-policy"}}
    required = schema_of("nvidia.com_clusterpolicies.yaml")["properties"]["spec"]["required"]
    policy["spec"] = {name: {} for name in required}
    policy["spec"]["driver"]["futureSetting"] = [1, 2]
    result, errors, dummy = crv(policy, schema=schema_of("nvidia.com_clusterpolicies.yaml"))
    assert errors == []
    assert result["spec"]["driver"]["futureSetting"] == [1, 2]


def test_missing_group_name_and_template_are_required():
    obj = raycluster()
    del obj["spec"]["workerGroupSpecs"][0]["groupName"]
    del obj["spec"]["workerGroupSpecs"][0]["template"]
    dummy, errors, dummy = crv(obj)
    assert sorted((e["reason"], e["field"], e["message"]) for e in errors) == [
        ("FieldValueRequired", "spec.workerGroupSpecs[0].groupName", "Required value"),
        ("FieldValueRequired", "spec.workerGroupSpecs[0].template", "Required value"),
    ]


def test_missing_containers_in_template_is_required():
    obj = raycluster()
    del obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["spec.headGroupSpec.template.spec.containers"]
    assert errors[0]["reason"] == "FieldValueRequired"


def test_replicas_of_wrong_type():
    obj = raycluster()
    obj["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    dummy, errors, dummy = crv(obj)
    assert errors == [
        {
            "reason": "FieldValueTypeInvalid",
            "field": "spec.workerGroupSpecs[0].replicas",
            "message": 'Invalid value: "string": spec.workerGroupSpecs[0].replicas in body must be of type integer: '
            '"string"',
        }
    ]
    obj["spec"]["workerGroupSpecs"][0]["replicas"] = 2.5
    dummy, errors, dummy = crv(obj)
    assert [e["reason"] for e in errors] == ["FieldValueTypeInvalid"]
    obj["spec"]["workerGroupSpecs"][0]["replicas"] = True
    dummy, errors, dummy = crv(obj)
    assert [e["reason"] for e in errors] == ["FieldValueTypeInvalid"]


def test_int32_range_enforced():
    obj = raycluster()
    obj["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 2**31
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["spec.workerGroupSpecs[0].maxReplicas"]


@pytest.mark.parametrize("value", ["8", 8, "16Gi", "500m", "1.5"])
def test_int_or_string_quantities_accepted(value):
    obj = raycluster()
    obj["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = value
    dummy, errors, dummy = crv(obj)
    assert errors == []


@pytest.mark.parametrize("value", ["lots", 1.5, ["1"]])
def test_bad_quantities_rejected(value):
    obj = raycluster()
    obj["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = value
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.cpu"]


def test_enum_and_pattern_in_crd():
    obj = raycluster()
    obj["spec"]["autoscalerOptions"] = {"upscalingMode": "Turbo", "version": "v2"}
    dummy, errors, dummy = crv(obj)
    assert errors == [
        {
            "reason": "FieldValueNotSupported",
            "field": "spec.autoscalerOptions.upscalingMode",
            "message": 'Unsupported value: "Turbo": supported values: "Default", "Aggressive", "Conservative"',
        }
    ]


def test_duplicate_container_names_rejected():
    obj = raycluster()
    containers = obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    containers.append(copy.deepcopy(containers[0]))
    dummy, errors, dummy = crv(obj)
    assert [(e["reason"], e["field"]) for e in errors] == [
        ("FieldValueDuplicate", "spec.headGroupSpec.template.spec.containers[1]")
    ]


def test_null_field_is_pruned_and_defaulted():
    obj = raycluster()
    obj["spec"]["workerGroupSpecs"][0]["numOfHosts"] = None
    result, errors, dummy = crv(obj)
    assert errors == []
    assert result["spec"]["workerGroupSpecs"][0]["numOfHosts"] == 1


def test_custom_resource_metadata_rules():
    obj = raycluster()
    obj["metadata"]["name"] = "Bad_Name"
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["metadata.name"]
    del obj["metadata"]["name"]
    dummy, errors, dummy = crv(obj)
    assert errors == [
        {
            "reason": "FieldValueRequired",
            "field": "metadata.name",
            "message": "Required value: name or generateName is required",
        }
    ]
    obj["metadata"]["generateName"] = "vllm-"
    dummy, errors, dummy = crv(obj)
    assert errors == []


def test_status_is_validated():
    obj = raycluster()
    obj["status"] = {"state": "ready", "desiredGPU": "8", "head": {"podIP": "10.0.0.1"}, "readyWorkerReplicas": "1"}
    dummy, errors, dummy = crv(obj)
    assert fields(errors) == ["status.readyWorkerReplicas"]


def test_rayjob_and_rayservice():
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "bench"},
        "spec": {
            "entrypoint": "python bench.py",
            "shutdownAfterJobFinishes": True,
            "entrypointNumGpus": 0.5,
            "rayClusterSpec": raycluster()["spec"],
            "submitterPodTemplate": pod_template("submitter"),
        },
    }
    result, errors, dummy = crv(job, schema=schema_of("ray.io_rayjobs.yaml"))
    assert errors == []
    assert result["spec"]["submissionMode"] == "K8sJobMode"
    assert result["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["numOfHosts"] == 1

    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["bogus"] = 1
    dummy, errors, dummy = crv(job, schema=schema_of("ray.io_rayjobs.yaml"))
    assert fields(errors) == ["spec.rayClusterSpec.workerGroupSpecs[0].bogus"]

    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "serve"},
        "spec": {"serveConfigV2": "applications: []\n", "rayClusterConfig": raycluster()["spec"]},
    }
    dummy, errors, dummy = crv(service, schema=schema_of("ray.io_rayservices.yaml"))
    assert errors == []
    del service["spec"]["rayClusterConfig"]
    dummy, errors, dummy = crv(service, schema=schema_of("ray.io_rayservices.yaml"))
    assert fields(errors) == ["spec.rayClusterConfig"]


def test_cluster_policy():
    schema = schema_of("nvidia.com_clusterpolicies.yaml")
    sections = ("daemonsets", "dcgm", "dcgmExporter", "devicePlugin", "driver", "gfd", "nodeStatusExporter")
    spec = {name: {"enabled": True} for name in sections if name != "daemonsets"}
    spec.update({"daemonsets": {}, "operator": {"defaultRuntime": "containerd"}, "toolkit": {"enabled": True}})
    spec["dcgmExporter"]["serviceMonitor"] = {"enabled": True, "interval": "15s"}
    spec["mig"] = {"strategy": "single"}
    spec["driver"]["somethingNew"] = {"x": 1}
    policy = {
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy"},
        "spec": spec,
        "status": {"state": "ready", "namespace": "gpu-operator"},
    }
    result, errors, dummy = crv(policy, schema=schema)
    assert errors == []
    assert result["spec"]["driver"]["somethingNew"] == {"x": 1}
    assert result["spec"]["daemonsets"]["updateStrategy"] == "RollingUpdate"
    policy["spec"]["mig"]["strategy"] = "double"
    policy["status"]["state"] = "green"
    del policy["spec"]["toolkit"]
    dummy, errors, dummy = crv(policy, schema=schema)
    assert sorted(fields(errors)) == ["spec.mig.strategy", "spec.toolkit", "status.state"]


def test_invalid_field_validation_mode():
    with pytest.raises(ValueError):
        crv(raycluster(), "Loud")
    dummy, dummy, warnings = crv({**raycluster(), "extra": 1}, "")
    assert warnings == ['unknown field "extra"']


# --- built-in kinds -----------------------------------------------------------------------------------------------


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template("web", gpus=1),
        },
    }


BUILTINS = [
    deployment(),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vllm-head-svc"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "500Gi"}}},
    },
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}, "type": "Opaque", "stringData": {"token": "x"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:ray-reader"},
        "rules": [{"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list"]}],
    },
    {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "anything"}, "spec": {"x": 1}},
]


@pytest.mark.parametrize("obj", BUILTINS, ids=lambda o: o["kind"])
def test_valid_builtins_pass(obj):
    assert validation.validate_builtin(obj) == ([], [])


def test_pod_typo_is_unknown_field():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containres": [{"name": "c"}]}}
    errors, warnings = validation.validate_builtin(pod)
    assert warnings == []
    assert {
        "reason": "FieldValueInvalid",
        "field": "spec.containres",
        "message": 'unknown field "spec.containres"',
    } in (errors)
    assert {"reason": "FieldValueRequired", "field": "spec.containers", "message": "Required value"} in errors

    errors, warnings = validation.validate_builtin(pod, "Warn", prune=True)
    assert warnings == ['unknown field "spec.containres"']
    assert "containres" not in pod["spec"]


def test_nested_unknown_field_in_deployment():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    errors, dummy = validation.validate_builtin(obj)
    assert fields(errors) == ["spec.template.spec.containers[0].imagePullPolice"]
    assert validation.validate_builtin(obj, "Ignore") == ([], [])


def test_service_port_wrong_type():
    svc = copy.deepcopy(BUILTINS[1])
    svc["spec"]["ports"][0]["port"] = "http"
    errors, dummy = validation.validate_builtin(svc)
    assert errors == [
        {
            "reason": "FieldValueTypeInvalid",
            "field": "spec.ports[0].port",
            "message": 'Invalid value: "string": spec.ports[0].port in body must be of type integer: "string"',
        }
    ]


def test_builtin_quantity_of_wrong_type():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = [1]
    errors, dummy = validation.validate_builtin(obj)
    assert [(e["reason"], e["field"]) for e in errors] == [
        ("FieldValueTypeInvalid", "spec.template.spec.containers[0].resources.limits.cpu")
    ]


@pytest.mark.parametrize(
    "kind, api_version, name",
    [
        ("ConfigMap", "v1", "Upper"),
        ("ConfigMap", "v1", "a" * 254),
        ("ConfigMap", "v1", "under_score"),
        ("Service", "v1", "has.dot"),
        ("Service", "v1", "1starts-with-digit"),
        ("Service", "v1", "a" * 64),
        ("Namespace", "v1", "dotted.name"),
    ],
)
def test_bad_names_rejected(kind, api_version, name):
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    errors, dummy = validation.validate_builtin(obj)
    assert errors and all(e["field"] == "metadata.name" for e in errors)
    assert all(e["reason"] == "FieldValueInvalid" for e in errors)


def test_good_names_accepted():
    for kind, name in [("ConfigMap", "a.b-c"), ("ConfigMap", "a" * 253), ("Service", "a" * 63), ("Pod", "0pod")]:
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
        if kind == "Pod":
            obj["spec"] = {"containers": [{"name": "c", "image": "x"}]}
        assert validation.validate_builtin(obj) == ([], []), (kind, name)


def test_labels_and_annotations():
    meta = {
        "name": "ok",
        "labels": {"bad key": "v", "example.com/ok": "a" * 64, "ok": "bad value"},
        "annotations": {"big": "x" * (256 * 1024)},
    }
    errors = validation.validate_object_meta({"kind": "ConfigMap", "metadata": meta}, "ConfigMap")
    assert [(e["field"], e["reason"]) for e in errors] == [
        ("metadata.labels", "FieldValueInvalid"),
        ("metadata.labels", "FieldValueInvalid"),
        ("metadata.labels", "FieldValueInvalid"),
        ("metadata.annotations", "FieldValueTooLong"),
    ]
    assert validation.validate_object_meta({"metadata": {"name": "ok", "labels": {"a/b": ""}}}, "ConfigMap") == []


def test_status_for_errors_format():
    errors = [
        validation.required("spec.workerGroupSpecs[0].groupName"),
        validation.type_invalid("spec.replicas", "string", 'spec.replicas in body must be of type integer: "string"'),
    ]
    status = validation.status_for_errors("RayCluster", "vllm", "ray.io", errors)
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'RayCluster.ray.io "vllm" is invalid: [spec.workerGroupSpecs[0].groupName: Required value, '
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"]',
        "reason": "Invalid",
        "details": {
            "name": "vllm",
            "group": "ray.io",
            "kind": "RayCluster",
            "causes": [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.workerGroupSpecs[0].groupName",
                },
                {
                    "reason": "FieldValueTypeInvalid",
                    "message": 'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
                    "field": "spec.replicas",
                },
            ],
        },
        "code": 422,
    }
    single = validation.status_for_errors("Service", "My", "", [validation.required("spec.ports")])
    assert single["message"] == 'Service "My" is invalid: spec.ports: Required value'
    assert "group" not in single["details"]


def test_status_for_unknown_fields_format():
    status = validation.status_for_unknown_fields("Pod", "v1", [validation.unknown_field("spec.containres")])
    assert status["code"] == 400
    assert status["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containres"'
    )


def test_builtin_validation_is_fast():
    obj = deployment()
    assert validation.validate_builtin(obj) == ([], [])
    start = time.perf_counter()
    for _dummy in range(200):
        validation.validate_builtin(obj)
    assert time.perf_counter() - start < 2.0


def test_raycluster_validation_is_fast():
    obj = raycluster()
    crv(obj)
    start = time.perf_counter()
    for _dummy in range(200):
        crv(obj)
    assert time.perf_counter() - start < 2.0
