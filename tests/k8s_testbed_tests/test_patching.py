# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the testbed's patch arithmetic: JSON patch, merge patch, strategic merge patch, server-side apply."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8s_testbed import patching

POD = "io.k8s.api.core.v1.Pod"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"


def pod(containers=None, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": containers or [{"name": "app", "image": "app:1"}], **spec},
    }


def deployment(replicas=1, containers=None, labels=None):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "vllm", "namespace": "ml", **({"labels": labels} if labels else {})},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "vllm"}},
            "template": {
                "metadata": {"labels": {"app": "vllm"}},
                "spec": {"containers": containers or [{"name": "vllm", "image": "vllm:1"}]},
            },
        },
    }


def containers_of(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def fields_of(obj, manager, operation=None):
    entries = [
        entry
        for entry in obj["metadata"].get("managedFields", [])
        if entry["manager"] == manager and (operation is None or entry["operation"] == operation)
    ]
    assert len(entries) == 1, entries
    return entries[0]["fieldsV1"]


# ---------------------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def test_json_patch_add_to_object_and_array():
    doc = {"a": {"b": 1}, "list": [1, 3]}
    result = patching.apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/a/c", "value": 2},
            {"op": "add", "path": "/list/1", "value": 2},
            {"op": "add", "path": "/list/-", "value": 4},
        ],
    )
    assert result == {"a": {"b": 1, "c": 2}, "list": [1, 2, 3, 4]}
    assert doc == {"a": {"b": 1}, "list": [1, 3]}  # input untouched


def test_json_patch_add_replaces_existing_member_and_whole_document():
    assert patching.apply_json_patch({"a": 1}, [{"op": "add", "path": "/a", "value": 2}]) == {"a": 2}
    assert patching.apply_json_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}


def test_json_patch_remove_and_replace():
    doc = {"a": 1, "b": [1, 2, 3], "c": {"d": 4}}
    result = patching.apply_json_patch(
        doc,
        [
            {"op": "remove", "path": "/a"},
            {"op": "remove", "path": "/b/0"},
            {"op": "replace", "path": "/c/d", "value": 5},
            {"op": "replace", "path": "/b/1", "value": 9},
        ],
    )
    assert result == {"b": [2, 9], "c": {"d": 5}}


def test_json_patch_move_and_copy():
    doc = {"a": {"x": 1}, "b": [1]}
    result = patching.apply_json_patch(
        doc,
        [
            {"op": "copy", "from": "/a", "path": "/c"},
            {"op": "move", "from": "/a/x", "path": "/b/-"},
        ],
    )
    assert result == {"a": {}, "b": [1, 1], "c": {"x": 1}}


def test_json_patch_copy_is_independent_of_source():
    result = patching.apply_json_patch(
        {"a": {"x": 1}},
        [{"op": "copy", "from": "/a", "path": "/b"}, {"op": "replace", "path": "/b/x", "value": 2}],
    )
    assert result == {"a": {"x": 1}, "b": {"x": 2}}


def test_json_patch_move_into_own_child_is_rejected():
    with pytest.raises(patching.PatchError) as caught:
        patching.apply_json_patch({"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}])
    assert caught.value.code == 422


def test_json_patch_pointer_escapes():
    doc = {"a/b": 1, "m~n": 2, "~1": 3}
    result = patching.apply_json_patch(
        doc,
        [
            {"op": "replace", "path": "/a~1b", "value": 10},
            {"op": "replace", "path": "/m~0n", "value": 20},
            {"op": "replace", "path": "/~01", "value": 30},  # "~01" is "~1", not "/"
            {"op": "test", "path": "/a~1b", "value": 10},
        ],
    )
    assert result == {"a/b": 10, "m~n": 20, "~1": 30}


def test_json_patch_annotation_key_with_slash():
    obj = {"metadata": {"annotations": {"example.com/owner": "a"}}}
    ops = [{"op": "replace", "path": "/metadata/annotations/example.com~1owner", "value": "b"}]
    assert patching.apply_json_patch(obj, ops)["metadata"]["annotations"] == {"example.com/owner": "b"}


def test_json_patch_test_op_passes_and_fails():
    doc = {"a": [1, {"b": True}], "n": 1}
    assert patching.apply_json_patch(doc, [{"op": "test", "path": "/a", "value": [1, {"b": True}]}]) == doc
    with pytest.raises(patching.PatchError) as caught:
        patching.apply_json_patch(doc, [{"op": "test", "path": "/a/1/b", "value": False}])
    assert caught.value.code == 422
    # JSON tells true apart from 1, even though Python does not
    with pytest.raises(patching.PatchError):
        patching.apply_json_patch(doc, [{"op": "test", "path": "/n", "value": True}])


def test_json_patch_failed_test_applies_nothing():
    doc = {"a": 1}
    with pytest.raises(patching.PatchError):
        patching.apply_json_patch(
            doc, [{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}]
        )
    assert doc == {"a": 1}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/missing", "value": 1},
        {"op": "add", "path": "/missing/child", "value": 1},
        {"op": "add", "path": "/list/5", "value": 1},
        {"op": "remove", "path": "/list/2"},
        {"op": "add", "path": "/list/01", "value": 1},
        {"op": "move", "from": "/missing", "path": "/x"},
        {"op": "test", "path": "/missing", "value": None},
    ],
)
def test_json_patch_missing_targets_are_unprocessable(operation):
    with pytest.raises(patching.PatchError) as caught:
        patching.apply_json_patch({"list": [1, 2]}, [operation])
    assert caught.value.code == 422


@pytest.mark.parametrize(
    "operations",
    [
        {"op": "add", "path": "/a", "value": 1},  # not a list
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "/a"}],  # no value
        [{"op": "add", "value": 1}],  # no path
        [{"op": "move", "path": "/a"}],  # no from
        [{"op": "add", "path": "a", "value": 1}],  # pointer without leading slash
    ],
)
def test_json_patch_malformed_is_bad_request(operations):
    with pytest.raises(patching.PatchError) as caught:
        patching.apply_json_patch({"a": 0}, operations)
    assert caught.value.code == 400


# ---------------------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({"a": "foo"}, ["c"], ["c"]),
    ],
)
def test_merge_patch(target, patch, expected):
    original = copy.deepcopy(target)
    original_patch = copy.deepcopy(patch)
    assert patching.apply_merge_patch(target, patch) == expected
    assert target == original and patch == original_patch


def test_merge_patch_result_does_not_share_patch_values():
    patch = {"spec": {"list": [1]}}
    result = patching.apply_merge_patch({}, patch)
    result["spec"]["list"].append(2)
    assert patch == {"spec": {"list": [1]}}


# ---------------------------------------------------------------------------------------------------------------------
# Strategic merge patch


def test_smp_container_patched_by_name_keeps_other_containers():
    obj = deployment(containers=[{"name": "vllm", "image": "vllm:1"}, {"name": "sidecar", "image": "proxy:1"}])
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:2"}]}}}}
    result = patching.apply_strategic_merge_patch(obj, patch, DEPLOYMENT)
    assert containers_of(result) == [{"name": "vllm", "image": "vllm:2"}, {"name": "sidecar", "image": "proxy:1"}]
    assert containers_of(obj)[0]["image"] == "vllm:1"


def test_smp_same_patch_without_schema_replaces_the_list():
    obj = deployment(containers=[{"name": "vllm", "image": "vllm:1"}, {"name": "sidecar", "image": "proxy:1"}])
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm:2"}]}}}}
    result = patching.apply_strategic_merge_patch(obj, patch, None)
    assert containers_of(result) == [{"name": "vllm", "image": "vllm:2"}]


def test_smp_env_merged_by_name_and_volume_mounts_by_mount_path():
    obj = pod(
        [
            {
                "name": "app",
                "image": "app:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}],
            }
        ]
    )
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                    "volumeMounts": [{"name": "models", "mountPath": "/data", "readOnly": True}],
                }
            ]
        }
    }
    container = patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["containers"][0]
    assert container["image"] == "app:1"
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]
    # matched on mountPath, so the mount at /data is renamed rather than a second one added
    assert container["volumeMounts"] == [
        {"name": "models", "mountPath": "/data", "readOnly": True},
        {"name": "cache", "mountPath": "/cache"},
    ]


def test_smp_service_ports_merge_by_port():
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "name": "http"}]}}
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 8000}, {"port": 443, "name": "https"}]}}
    result = patching.apply_strategic_merge_patch(service, patch, "io.k8s.api.core.v1.Service")
    assert result["spec"]["ports"] == [{"port": 80, "name": "http", "targetPort": 8000}, {"port": 443, "name": "https"}]


def test_smp_delete_directive_in_list_item():
    obj = pod([{"name": "app", "image": "app:1"}, {"name": "debug", "image": "busybox"}])
    patch = {"spec": {"containers": [{"name": "debug", "$patch": "delete"}]}}
    assert patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["containers"] == [
        {"name": "app", "image": "app:1"}
    ]


def test_smp_replace_directive_on_list():
    obj = pod([{"name": "app", "image": "app:1", "ports": [{"containerPort": 1}]}, {"name": "b", "image": "b"}])
    patch = {"spec": {"containers": [{"name": "new", "image": "new:1"}, {"$patch": "replace"}]}}
    assert patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["containers"] == [
        {"name": "new", "image": "new:1"}
    ]


def test_smp_replace_and_delete_directives_on_maps():
    obj = pod(nodeSelector={"a": "1"}, securityContext={"runAsUser": 1, "runAsGroup": 2})
    patch = {"spec": {"securityContext": {"$patch": "replace", "fsGroup": 3}, "nodeSelector": {"$patch": "delete"}}}
    spec = patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]
    assert spec["securityContext"] == {"fsGroup": 3}
    assert "nodeSelector" not in spec


def test_smp_merge_directive_is_the_default_merge():
    obj = pod(securityContext={"runAsUser": 1})
    patch = {"spec": {"securityContext": {"$patch": "merge", "fsGroup": 3}}}
    assert patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["securityContext"] == {
        "runAsUser": 1,
        "fsGroup": 3,
    }


def test_smp_null_deletes_a_key():
    obj = deployment(labels={"app": "vllm", "tier": "gpu"})
    patch = {"metadata": {"labels": {"tier": None}}, "spec": {"replicas": None}}
    result = patching.apply_strategic_merge_patch(obj, patch, DEPLOYMENT)
    assert result["metadata"]["labels"] == {"app": "vllm"}
    assert "replicas" not in result["spec"]


def test_smp_tolerations_are_atomic_in_the_schema_so_they_are_replaced():
    # PodSpec.tolerations is x-kubernetes-list-type: atomic with no patch strategy in the bundled schema
    tolerations_schema = patching._field_schema({"$ref": "#/$defs/io.k8s.api.core.v1.PodSpec"}, "tolerations")
    assert tolerations_schema.get("x-kubernetes-list-type") == "atomic"
    assert "x-kubernetes-patch-strategy" not in tolerations_schema
    obj = pod(tolerations=[{"key": "gpu", "operator": "Exists"}, {"key": "spot", "operator": "Exists"}])
    patch = {"spec": {"tolerations": [{"key": "gpu", "operator": "Equal", "value": "a100"}]}}
    assert patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "a100"}
    ]


def test_smp_primitive_merge_list_is_unioned_and_other_primitive_lists_replaced():
    obj = pod([{"name": "app", "image": "app:1", "args": ["--a", "--b"]}])
    obj["metadata"]["finalizers"] = ["one", "two"]
    patch = {
        "metadata": {"finalizers": ["two", "three"]},  # ObjectMeta.finalizers: patch strategy merge
        "spec": {"containers": [{"name": "app", "args": ["--c"]}]},  # Container.args: atomic
    }
    result = patching.apply_strategic_merge_patch(obj, patch, POD)
    assert result["metadata"]["finalizers"] == ["one", "two", "three"]
    assert result["spec"]["containers"][0]["args"] == ["--c"]


def test_smp_delete_from_primitive_list():
    obj = pod()
    obj["metadata"]["finalizers"] = ["one", "two", "three"]
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["two"], "finalizers": ["four"]}}
    result = patching.apply_strategic_merge_patch(obj, patch, POD)
    assert result["metadata"]["finalizers"] == ["one", "three", "four"]


def test_smp_set_element_order():
    obj = pod([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b", "image": "b:2"}],
        }
    }
    containers = patching.apply_strategic_merge_patch(obj, patch, POD)["spec"]["containers"]
    assert containers == [{"name": "c", "image": "c"}, {"name": "b", "image": "b:2"}, {"name": "a", "image": "a"}]


def test_smp_set_element_order_on_primitive_list():
    obj = pod()
    obj["metadata"]["finalizers"] = ["x", "y"]
    patch = {"metadata": {"$setElementOrder/finalizers": ["z", "y", "x"], "finalizers": ["z"]}}
    assert patching.apply_strategic_merge_patch(obj, patch, POD)["metadata"]["finalizers"] == ["z", "y", "x"]


def test_smp_retain_keys_clears_unlisted_fields():
    obj = deployment()
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert patching.apply_strategic_merge_patch(obj, patch, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_new_list_under_missing_parent_honours_directives():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    patch = {"spec": {"containers": [{"name": "app", "image": "a", "env": [{"name": "X", "value": None}]}]}}
    result = patching.apply_strategic_merge_patch(obj, patch, POD)
    assert result["spec"]["containers"] == [{"name": "app", "image": "a", "env": [{"name": "X"}]}]


def test_smp_item_without_merge_key_is_rejected():
    with pytest.raises(patching.PatchError) as caught:
        patching.apply_strategic_merge_patch(pod(), {"spec": {"containers": [{"image": "x"}]}}, POD)
    assert caught.value.code == 422
    assert "name" in caught.value.message


# ---------------------------------------------------------------------------------------------------------------------
# definition_for


@pytest.mark.parametrize(
    ("api_version", "kind", "definition"),
    [
        ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
        ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
        ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
        ("rbac.authorization.k8s.io/v1", "Role", "io.k8s.api.rbac.v1.Role"),
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        ),
        ("v1", "Deployment", None),
        ("ray.io/v1", "RayCluster", None),
    ],
)
def test_definition_for(api_version, kind, definition):
    assert patching.definition_for(api_version, kind) == definition


# ---------------------------------------------------------------------------------------------------------------------
# Server-side apply


NOW = "2025-01-01T00:00:00Z"


def apply(live, config, manager, **kwargs):
    return patching.server_side_apply(live, config, manager, definition=DEPLOYMENT, now=NOW, **kwargs)


def test_ssa_create_records_apply_ownership_in_fieldsv1_shape():
    config = deployment(replicas=2, labels={"app": "vllm"})
    before = copy.deepcopy(config)
    created = apply(None, config, "ansible")
    assert config == before
    assert created["spec"] == config["spec"]
    [entry] = created["metadata"]["managedFields"]
    assert {key: entry[key] for key in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "ansible",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": NOW,
        "fieldsType": "FieldsV1",
    }
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert fields["f:spec"]["f:replicas"] == {}
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"vllm"}': {".": {}, "f:image": {}, "f:name": {}}
    }


def test_ssa_reapply_unchanged_is_a_no_op():
    created = apply(None, deployment(replicas=2), "ansible")
    again = apply(created, deployment(replicas=2), "ansible")
    assert again == created


def test_ssa_keeps_server_managed_metadata_and_status_from_live():
    created = apply(None, deployment(), "ansible")
    created["metadata"].update(uid="u-1", resourceVersion="7", generation=3, creationTimestamp="t")
    created["status"] = {"replicas": 1}
    config = deployment(replicas=4)
    config["metadata"].update(uid="forged", resourceVersion="1")
    config["status"] = {"replicas": 99}
    updated = apply(created, config, "ansible")
    assert {k: updated["metadata"][k] for k in ("uid", "resourceVersion", "generation", "creationTimestamp")} == {
        "uid": "u-1",
        "resourceVersion": "7",
        "generation": 3,
        "creationTimestamp": "t",
    }
    assert updated["status"] == {"replicas": 1}
    assert updated["spec"]["replicas"] == 4


def test_ssa_removes_a_field_the_manager_dropped():
    created = apply(None, deployment(labels={"app": "vllm", "tier": "gpu"}), "ansible")
    updated = apply(created, deployment(labels={"app": "vllm"}), "ansible")
    assert updated["metadata"]["labels"] == {"app": "vllm"}
    assert fields_of(updated, "ansible")["f:metadata"] == {"f:labels": {"f:app": {}}}


def test_ssa_keeps_a_dropped_field_that_another_manager_also_owns():
    created = apply(None, deployment(labels={"app": "vllm", "tier": "gpu"}), "ansible")
    shared = apply(created, {"apiVersion": "apps/v1", "kind": "Deployment", **_labels({"tier": "gpu"})}, "ops")
    updated = apply(shared, deployment(labels={"app": "vllm"}), "ansible")
    assert updated["metadata"]["labels"] == {"app": "vllm", "tier": "gpu"}


def _labels(labels):
    return {"metadata": {"name": "vllm", "namespace": "ml", "labels": labels}}


def test_ssa_conflicts_with_another_managers_update():
    created = patching.record_update_ownership(None, deployment(replicas=1), "kubectl-edit", now="t0")
    with pytest.raises(patching.PatchError) as caught:
        apply(created, deployment(replicas=3), "ansible")
    error = caught.value
    assert error.code == 409
    assert error.message == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'
    cause = {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using apps/v1'}
    assert error.causes == [{**cause, "field": ".spec.replicas"}]


def test_ssa_same_value_is_shared_not_a_conflict():
    created = patching.record_update_ownership(None, deployment(replicas=1), "kubectl-create", now="t0")
    applied = apply(created, deployment(replicas=1), "ansible")
    assert fields_of(applied, "ansible", "Apply")["f:spec"]["f:replicas"] == {}
    assert fields_of(applied, "kubectl-create", "Update")["f:spec"]["f:replicas"] == {}


def test_ssa_conflict_names_every_field():
    created = apply(None, deployment(replicas=1), "other")
    config = deployment(replicas=2, containers=[{"name": "vllm", "image": "vllm:2"}])
    with pytest.raises(patching.PatchError) as caught:
        apply(created, config, "ansible")
    assert caught.value.message.startswith('Apply failed with 2 conflicts: conflicts with "other":')
    assert {cause["field"] for cause in caught.value.causes} == {
        ".spec.replicas",
        '.spec.template.spec.containers[name="vllm"].image',
    }


def test_ssa_force_takes_ownership():
    created = patching.record_update_ownership(None, deployment(replicas=1), "kubectl-edit", now="t0")
    forced = apply(created, deployment(replicas=3), "ansible", force=True)
    assert forced["spec"]["replicas"] == 3
    assert "f:replicas" in fields_of(forced, "ansible", "Apply")["f:spec"]
    assert "f:replicas" not in fields_of(forced, "kubectl-edit", "Update")["f:spec"]
    # the old owner no longer blocks: the next apply without force goes through
    assert apply(forced, deployment(replicas=5), "ansible")["spec"]["replicas"] == 5


def test_ssa_two_appliers_own_different_containers_in_one_list():
    base = deployment(containers=[{"name": "vllm", "image": "vllm:1"}])
    first = apply(None, base, "ansible")
    sidecar = deployment(containers=[{"name": "proxy", "image": "proxy:1"}])
    del sidecar["spec"]["replicas"], sidecar["spec"]["selector"], sidecar["spec"]["template"]["metadata"]
    both = apply(first, sidecar, "mesh")
    assert containers_of(both) == [{"name": "vllm", "image": "vllm:1"}, {"name": "proxy", "image": "proxy:1"}]
    assert list(fields_of(both, "mesh")["f:spec"]["f:template"]["f:spec"]["f:containers"]) == ['k:{"name":"proxy"}']

    # each applier changes its own container without conflict, and dropping one's item leaves the other's
    bumped = apply(both, deployment(containers=[{"name": "vllm", "image": "vllm:2"}]), "ansible")
    assert containers_of(bumped) == [{"name": "vllm", "image": "vllm:2"}, {"name": "proxy", "image": "proxy:1"}]
    mesh_without_sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", **_labels({"mesh": "on"})}
    dropped = apply(bumped, mesh_without_sidecar, "mesh")
    assert containers_of(dropped) == [{"name": "vllm", "image": "vllm:2"}]
    assert dropped["metadata"]["labels"] == {"mesh": "on"}

    # touching the other applier's container is a conflict
    with pytest.raises(patching.PatchError) as caught:
        apply(both, deployment(containers=[{"name": "proxy", "image": "proxy:2"}]), "ansible")
    assert caught.value.causes[0]["field"] == '.spec.template.spec.containers[name="proxy"].image'


def test_ssa_without_schema_replaces_lists():
    live = patching.server_side_apply(None, deployment(containers=[{"name": "a", "image": "a"}]), "x")
    config = deployment(containers=[{"name": "b", "image": "b"}])
    assert containers_of(patching.server_side_apply(live, config, "x")) == [{"name": "b", "image": "b"}]


def test_ssa_container_ports_keyed_with_default_protocol():
    container = {"name": "vllm", "image": "v", "ports": [{"containerPort": 8000}]}
    created = apply(None, deployment(containers=[container]), "a")
    ports = fields_of(created, "a")["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"vllm"}']["f:ports"]
    assert list(ports) == ['k:{"containerPort":8000,"protocol":"TCP"}']


# ---------------------------------------------------------------------------------------------------------------------
# record_update_ownership


def test_update_ownership_on_create_covers_all_fields():
    created = patching.record_update_ownership(None, deployment(labels={"app": "vllm"}), "kubectl-create", now="t0")
    [entry] = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"]) == (
        "kubectl-create",
        "Update",
        "apps/v1",
        "t0",
    )
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]


def test_update_ownership_moves_changed_fields_to_the_writer():
    created = apply(None, deployment(replicas=1), "ansible")
    edited = copy.deepcopy(created)
    edited["spec"]["replicas"] = 4
    result = patching.record_update_ownership(created, edited, "kubectl-scale", now="t1")
    assert result is edited
    assert fields_of(result, "kubectl-scale", "Update") == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in fields_of(result, "ansible", "Apply")["f:spec"]
    # the applier now conflicts with the scaler, as on a real cluster
    with pytest.raises(patching.PatchError) as caught:
        apply(result, deployment(replicas=1), "ansible")
    assert 'conflict with "kubectl-scale" using apps/v1: .spec.replicas' in caught.value.message


def test_update_ownership_unchanged_write_adds_no_entry():
    created = apply(None, deployment(), "ansible")
    result = patching.record_update_ownership(created, copy.deepcopy(created), "someone", now="t1")
    assert [entry["manager"] for entry in result["metadata"]["managedFields"]] == ["ansible"]


def test_fields_v1_round_trip():
    paths = {
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:containers", 'k:{"name":"a"}'),
        ("f:spec", "f:containers", 'k:{"name":"a"}', "f:image"),
        ("f:metadata", "f:finalizers", 'v:"x"'),
    }
    tree = patching._to_fields_v1(paths)
    assert tree["f:spec"]["f:containers"]['k:{"name":"a"}'] == {".": {}, "f:image": {}}
    assert patching._from_fields_v1(tree) == paths
