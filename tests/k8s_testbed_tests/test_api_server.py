# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The emulated API server, driven by the real `kubernetes` client over TLS: discovery, verbs, errors, watch."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(testbed):
    return testbed.api_client()


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(core, request):
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        assert error.status == 404


def _message(error) -> str:
    """The message of the Status object an ApiException carries."""
    return json.loads(error.value.body)["message"]


def _config_map(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"a": "1"})


def test_unauthenticated_and_wrong_token_get_401(testbed):
    assert testbed.request("GET", "/api/v1/namespaces", token=False)[0] == 401
    status, body = testbed.request("GET", "/version", token="wrong")
    assert status == 401 and body["reason"] == "Unauthorized"


def test_client_certificate_context_authenticates(testbed):
    from kubernetes import config

    api = config.new_client_from_config(config_file=testbed.kubeconfig, context="testbed-cert")
    assert client.VersionApi(api).get_code().git_version.startswith("v1.33")


def test_discovery_lists_builtin_and_crd_kinds(api):
    assert client.VersionApi(api).get_code().minor == "33"
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "apiextensions.k8s.io", "ray.io"} <= set(groups)
    assert groups["ray.io"].preferred_version.group_version == "ray.io/v1"
    core_resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core_resources["pods"].namespaced and core_resources["pods"].short_names == ["po"]
    assert "watch" in core_resources["pods"].verbs
    assert core_resources["pods/exec"].kind == "PodExecOptions"
    assert core_resources["services/proxy"].kind == "ServiceProxyOptions"
    assert not core_resources["nodes"].namespaced
    ray = client.CustomObjectsApi(api).get_api_resources("ray.io", "v1").resources
    assert {"rayclusters", "rayclusters/status", "rayjobs", "rayservices"} <= {r.name for r in ray}


def test_create_get_list_and_server_fields(core, namespace, testbed):
    created = core.create_namespaced_config_map(namespace, _config_map("one", labels={"tier": "a"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.namespace == namespace
    second = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="gen-"), data={})
    )
    assert second.metadata.name.startswith("gen-") and len(second.metadata.name) > 4
    assert int(second.metadata.resource_version) > int(created.metadata.resource_version)
    status, raw = testbed.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert status == 200 and raw["kind"] == "ConfigMapList" and raw["apiVersion"] == "v1"
    listed = core.list_namespaced_config_map(namespace)
    assert {item.metadata.name for item in listed.items} == {"one", second.metadata.name}
    assert int(listed.metadata.resource_version) >= int(second.metadata.resource_version)
    assert [i.metadata.name for i in core.list_namespaced_config_map(namespace, label_selector="tier=a").items] == [
        "one"
    ]
    assert core.list_namespaced_config_map(namespace, label_selector="tier notin (a)").items[0].metadata.name == (
        second.metadata.name
    )
    by_name = core.list_namespaced_config_map(namespace, field_selector="metadata.name!=one")
    assert [i.metadata.name for i in by_name.items] == [second.metadata.name]


def test_errors_are_status_objects(core, namespace):
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("absent", namespace)
    assert missing.value.status == 404 and 'configmaps "absent" not found' == _message(missing)
    core.create_namespaced_config_map(namespace, _config_map("dup"))
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map(namespace, _config_map("dup"))
    assert duplicate.value.status == 409 and json.loads(duplicate.value.body)["reason"] == "AlreadyExists"
    stale = core.read_namespaced_config_map("dup", namespace)
    core.patch_namespaced_config_map("dup", namespace, {"data": {"a": "2"}})
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("dup", namespace, stale)
    assert conflict.value.status == 409 and "the object has been modified" in _message(conflict)
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("no-such-namespace", _config_map("x"))
    assert no_namespace.value.status == 404 and _message(no_namespace) == 'namespaces "no-such-namespace" not found'


def test_generation_changes_with_spec_only(api, namespace):
    apps = client.AppsV1Api(api)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x:1"}]},
            },
        },
    }
    created = apps.create_namespaced_deployment(namespace, deployment)
    assert created.metadata.generation == 1
    relabeled = apps.patch_namespaced_deployment("web", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert relabeled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 2}})
    assert scaled.metadata.generation == 2
    # A write that changes nothing keeps the resourceVersion.
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map(namespace, _config_map("same"))
    again = core.patch_namespaced_config_map("same", namespace, {"data": {"a": "1"}})
    assert again.metadata.resource_version == first.metadata.resource_version


def test_patch_kinds(api, namespace):
    apps = client.AppsV1Api(api)
    containers = [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:1"},
    ]
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "p"},
        "spec": {
            "selector": {"matchLabels": {"app": "p"}},
            "template": {"metadata": {"labels": {"app": "p"}}, "spec": {"containers": containers}},
        },
    }
    apps.create_namespaced_deployment(namespace, body)
    # Strategic merge (the client's default for dicts): containers merged by name, env by name.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}}
    merged = apps.patch_namespaced_deployment("p", namespace, patch)
    spec = merged.spec.template.spec
    assert [c.name for c in spec.containers] == ["a", "b"]
    assert {e.name for e in spec.containers[0].env} == {"X", "Y"}
    # JSON patch.
    ops = [{"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "b:2"}]
    assert apps.patch_namespaced_deployment("p", namespace, ops).spec.template.spec.containers[1].image == "b:2"
    failed = [{"op": "test", "path": "/spec/replicas", "value": 99}]
    with pytest.raises(ApiException) as error:
        apps.patch_namespaced_deployment("p", namespace, failed)
    assert error.value.status == 422


def test_custom_resources_refuse_strategic_merge(api, testbed, namespace):
    custom = client.CustomObjectsApi(api)
    cluster = _raycluster("rc")
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", cluster)
    status, body = testbed.request(
        "PATCH",
        f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/rc",
        {"spec": {"suspend": True}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    status, body = testbed.request(
        "PATCH",
        f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/rc",
        {"spec": {"suspend": True}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and body["spec"]["suspend"] is True and body["metadata"]["generation"] == 2


def _raycluster(name, extra_spec=None):
    container = {"name": "ray-head", "image": "rayproject/ray:2.49.2", "resources": {"limits": {"cpu": "1"}}}
    spec = {
        "rayVersion": "2.49.2",
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
    }
    spec.update(extra_spec or {})
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name}, "spec": spec}


def test_crd_schema_rejects_unknown_fields_with_422(api, namespace):
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            "ray.io", "v1", namespace, "rayclusters", _raycluster("bad", {"headGroupSpex": {}})
        )
    assert error.value.status == 422
    assert 'unknown field "spec.headGroupSpex"' in _message(error)


def test_deprecated_v1alpha1_is_served_with_a_warning(api, namespace):
    """KubeRay 1.7's CRDs still serve ray.io/v1alpha1 (deprecated, not stored): the same objects, read in that
    version (conversion strategy None), each response with the version's deprecationWarning."""
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert [v.version for v in groups["ray.io"].versions] == ["v1", "v1alpha1"]
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", _raycluster("old"))
    body, status, headers = custom.get_namespaced_custom_object_with_http_info(
        "ray.io", "v1alpha1", namespace, "rayclusters", "old"
    )
    assert (status, body["apiVersion"]) == (200, "ray.io/v1alpha1")
    assert "ray.io/v1alpha1 RayCluster is deprecated; use ray.io/v1 RayCluster." in headers["Warning"]
    stored = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", "old")
    assert stored["apiVersion"] == "ray.io/v1"
    with pytest.raises(ApiException) as error:  # v1alpha1's schema: rayStartParams is required there
        bad = _raycluster("older")
        bad["apiVersion"] = "ray.io/v1alpha1"
        del bad["spec"]["headGroupSpec"]["rayStartParams"]
        custom.create_namespaced_custom_object("ray.io", "v1alpha1", namespace, "rayclusters", bad)
    assert error.value.status == 422


def test_builtin_schema_rejects_unknown_fields_with_422(testbed, namespace):
    # Sent raw: the typed client would refuse the typo itself before sending.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolice": "Always"}]},
    }
    status, body = testbed.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    assert status == 422 and body["reason"] == "Invalid"
    assert 'unknown field "spec.containers[0].imagePullPolice"' in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].imagePullPolice"


def test_dry_run_creates_nothing(core, namespace):
    made = core.create_namespaced_config_map(namespace, _config_map("dry"), dry_run="All")
    assert made.metadata.name == "dry"
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", namespace)


def test_server_side_apply_creates_then_conflicts(testbed, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied"
    manifest = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "v"}}'
    status, body = testbed.request("PATCH", path, manifest, content_type="application/apply-patch+yaml")
    assert status == 422 and "fieldManager" in body["message"]
    status, body = testbed.request(
        "PATCH", path + "?fieldManager=one", manifest, content_type="application/apply-patch+yaml"
    )
    assert status == 201 and body["data"] == {"k": "v"}
    assert body["metadata"]["managedFields"][0]["manager"] == "one"
    other = manifest.replace('"v"}', '"w"}')
    status, body = testbed.request(
        "PATCH", path + "?fieldManager=two", other, content_type="application/apply-patch+yaml"
    )
    assert status == 409 and "conflict" in body["message"].lower()
    status, body = testbed.request(
        "PATCH", path + "?fieldManager=two&force=true", other, content_type="application/apply-patch+yaml"
    )
    assert status == 200 and body["data"] == {"k": "w"}


def _widget_crd(status_subresource=True):
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                },
            }
        },
    }
    if status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "versions": [version],
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        },
    }


def test_status_subresource_is_separate(api, namespace):
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(_widget_crd())
    try:
        custom = client.CustomObjectsApi(api)
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
        custom.create_namespaced_custom_object("example.com", "v1", namespace, "widgets", widget)
        # The main resource ignores status; the status subresource ignores spec.
        main = custom.patch_namespaced_custom_object(
            "example.com", "v1", namespace, "widgets", "w", {"status": {"phase": "main"}}
        )
        assert "status" not in main
        status = custom.patch_namespaced_custom_object_status(
            "example.com", "v1", namespace, "widgets", "w", {"status": {"phase": "set"}, "spec": {"size": 9}}
        )
        assert status["status"] == {"phase": "set"} and status["spec"] == {"size": 1}
        assert status["metadata"]["generation"] == 1
    finally:
        extensions.delete_custom_resource_definition("widgets.example.com")


def test_finalizers_hold_deletion(core, namespace):
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/hold"]))
    )
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("held", namespace)
    assert gone.value.status == 404


def test_namespace_deletion_cascades(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map("doomed", _config_map("inside"))
    core.delete_namespace("doomed")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            core.read_namespace("doomed")
        except ApiException as error:
            assert error.status == 404
            break
        time.sleep(0.1)
    else:
        pytest.fail("namespace never went away")
    assert all(cm.metadata.namespace != "doomed" for cm in core.list_config_map_for_all_namespaces().items)


def test_crd_lifecycle_registers_and_removes_kinds(api, namespace):
    extensions = client.ApiextensionsV1Api(api)
    crd = _widget_crd(status_subresource=False)
    created = extensions.create_custom_resource_definition(crd)
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions["Established"] == "True"
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}},
    )
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(
            "example.com",
            "v1",
            namespace,
            "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "v"}, "spec": {"size": "big"}},
        )
    assert invalid.value.status == 422
    extensions.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as gone:
        custom.list_namespaced_custom_object("example.com", "v1", namespace, "widgets")
    assert gone.value.status == 404


def test_watch_streams_changes_and_honours_resource_version(core, namespace):
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    events = []

    def follow():
        for event in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=5
        ):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                return

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(namespace, _config_map("w1"))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w1", namespace)
    follower.join(10)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    # Replaying from the same resourceVersion afterwards gives the same history.
    replay = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=1
        )
    ]
    assert replay == events


def test_watch_timeout_and_gone(fresh_testbed):
    bed = fresh_testbed(controllers=[])
    core = client.CoreV1Api(bed.api_client())
    started = time.monotonic()
    assert list(watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1)) == []
    assert time.monotonic() - started < 5
    old = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _config_map("c"))
    bed.admin("POST", "compact")
    with pytest.raises(ApiException) as gone:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=2))
    assert gone.value.status == 410


def test_faults_fail_then_recover(fresh_testbed):
    bed = fresh_testbed(controllers=[])
    core = client.CoreV1Api(bed.api_client())
    bed.admin("POST", "faults", {"count": 2, "status": 503, "path_regex": "/configmaps"})
    for _dummy in range(2):
        with pytest.raises(ApiException) as error:
            core.list_namespaced_config_map("default")
        assert error.value.status == 503
    assert core.list_namespaced_config_map("default").items == []
    bed.admin("POST", "faults", {"count": 1, "status": 0, "delay_seconds": 1.0})
    started = time.monotonic()
    core.list_namespaced_config_map("default")
    assert time.monotonic() - started >= 1.0


def test_dynamic_client_discovers_crds(api, namespace):
    dyn = dynamic.DynamicClient(api)
    clusters = dyn.resources.get(api_version="ray.io/v1", kind="RayCluster")
    dyn_created = clusters.create(body=_raycluster("dyn"), namespace=namespace)
    assert dyn_created.metadata.name == "dyn"
    assert [item.metadata.name for item in clusters.get(namespace=namespace).items] == ["dyn"]


def test_foreground_deletion_removes_dependents_first(core, namespace):
    owner = core.create_namespaced_config_map(namespace, _config_map("owner"))
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference]))
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        if not names & {"owner", "dependent"}:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"foreground deletion left {names}")
