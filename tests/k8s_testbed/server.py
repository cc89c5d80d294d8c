# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The emulated kube-apiserver: discovery, CRUD, patch, apply, watch, subresources, and the /testbed/v1 admin API.

Routing follows the real URL layout (/api/v1/namespaces/<ns>/<plural>/<name>/<subresource>,
/apis/<group>/<version>/...). Controllers run on the same event loop after every change.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import os
import re
import ssl

import yaml
from aiohttp import web

from . import controllers, defaults, patching, pod_env, pod_exec, rbac, resources, selectors, service_proxy, validation
from .pod_security import admission_error as pod_security_refusal
from .pod_security import namespace_label_errors
from .state import Fault, TestBedState
from .store import ApiError, Store, bad_request, not_found
from .timestamps import now_rfc3339

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-llmops-testbed",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}
RECONCILE_INTERVAL = 1.0
LOG = logging.getLogger("k8s_testbed")


def _json(data, status=200, headers=None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def _status_response(error: ApiError) -> web.Response:
    return _json(error.status(), status=error.code)


def _success_status(resource_type, name, uid) -> dict:
    details = {"name": name, "kind": resource_type.plural, "uid": uid}
    if resource_type.group:
        details["group"] = resource_type.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class TestBed:
    """One emulated cluster: state, HTTP app, controller loop."""

    def __init__(
        self,
        seed: dict,
        token: str,
        *,
        exec_root: str,
        enabled_controllers=None,
        client_cert_cn="",
        runtime_dir=None,
        rbac_enabled=False,
    ):
        registry = resources.ResourceRegistry()
        objects = Store(registry)
        self.state = TestBedState(registry=registry, objects=objects, seed=seed, exec_root=exec_root)
        # With runtime_dir, pods whose images are stored locally run as containers (runtime/), from the start.
        self.runtime_dir = runtime_dir
        self.token = token
        self.client_cert_cn = client_cert_cn
        # Extra bearer tokens (admin API `tokens`) and, when enabled, RBAC deciding what they may do (rbac.py).
        self.rbac = rbac.Authorizer(enabled=rbac_enabled)
        objects.validate = self._validate
        objects.track_update = self._track_update
        self.controllers = {name: cls(self.state) for name, cls in controllers.CONTROLLERS.items()}
        names = set(self.controllers) if enabled_controllers is None else set(enabled_controllers)
        unknown = names - set(self.controllers)
        if unknown:
            raise ValueError(f"unknown controllers {sorted(unknown)}; known: {sorted(self.controllers)}")
        self.enabled = {name: name in names for name in self.controllers}
        self._reconcile_pending = False
        self._stopping = False
        objects.add_listener(lambda _event: self.reconcile_soon())
        controllers.apply_seed(self.state)

    # ---- hooks the store calls --------------------------------------------------------------------------------
    def _validate(self, resource_type, obj, field_validation, old):
        metadata = obj.get("metadata") or {}
        name = metadata.get("name") or metadata.get("generateName") or ""
        if resource_type.crd:
            obj, errors, warnings = validation.validate_custom_resource(obj, resource_type.schema, field_validation)
        else:
            obj = defaults.on_write(resource_type.kind, obj, old)
            errors, warnings = validation.validate_builtin(obj, field_validation, prune=field_validation != "Strict")
        if errors:
            status = validation.status_for_errors(resource_type.kind, name, resource_type.group, errors)
            raise ApiError(status["code"], status["reason"], status["message"], status.get("details"))
        self._admit_pod(resource_type, obj, old)
        return obj, warnings

    def _admit_pod(self, resource_type, obj, old):
        """Pod Security admission (pod_security.py): a new pod against its namespace's enforced level, the levels a
        Namespace's pod-security labels name."""
        if not resource_type.crd and resource_type.kind == "Namespace":
            refused = [f'{field}: Invalid value: "{value}": {why}' for field, value, why in namespace_label_errors(obj)]
            if refused:
                name = (obj.get("metadata") or {}).get("name") or ""
                raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: [{", ".join(refused)}]')
        if resource_type.crd or resource_type.kind != "Pod" or old is not None:
            return
        namespace_type = self.state.registry.for_kind("v1", "Namespace")
        namespace = self.state.objects.peek(namespace_type, None, (obj.get("metadata") or {}).get("namespace") or "")
        message = pod_security_refusal(obj, namespace)
        if message:
            raise ApiError(403, "Forbidden", message)

    @staticmethod
    def _track_update(old, new, manager):
        return patching.record_update_ownership(old, new, manager, now=now_rfc3339())

    # ---- controllers --------------------------------------------------------------------------------------
    def reconcile_soon(self) -> None:
        if self._reconcile_pending or self._stopping:
            return
        self._reconcile_pending = True
        with contextlib.suppress(RuntimeError):  # no running loop: a synchronous caller (seeding) reconciles later
            asyncio.get_running_loop().call_soon(self._reconcile_now)
            return
        self._reconcile_pending = False

    def _reconcile_now(self) -> None:
        self._reconcile_pending = False
        self.reconcile_all()

    def reconcile_all(self) -> None:
        self.state.objects.finish_terminations()
        for name, controller in self.controllers.items():
            if not self.enabled[name]:
                continue
            try:
                controller.reconcile()
            except Exception:  # a controller bug must show in the log, not stop the server
                LOG.exception("controller %s failed", name)

    async def _ticker(self, app) -> None:
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            self.reconcile_all()

    # ---- the app ------------------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware, self._fault_middleware], client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)

        async def start_ticker(app):
            self._start_runtime(asyncio.get_running_loop())
            app["ticker"] = asyncio.get_running_loop().create_task(self._ticker(app))

        async def stop_ticker(app):
            self._stopping = True
            await service_proxy.close_client_session()
            app["ticker"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app["ticker"]
            if self.state.runtime is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.state.runtime.stop)

        app.on_startup.append(start_ticker)
        app.on_cleanup.append(stop_ticker)
        return app

    def _start_runtime(self, loop) -> None:
        if self.runtime_dir is None:
            return
        from .images.store import ImageStore
        from .runtime import PodRuntime

        def poke():
            with contextlib.suppress(RuntimeError):  # the loop has closed: the test bed is stopping
                loop.call_soon_threadsafe(self.reconcile_soon)

        runtime = PodRuntime(self.runtime_dir, poke)
        runtime.start()
        self.state.images = ImageStore()
        self.state.runtime = runtime

    def _client_certificate_user(self, request) -> str:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if ssl_object is None:
            return ""
        peer = ssl_object.getpeercert()
        if not peer:
            return ""
        for entry in peer.get("subject", ()):
            for key, value in entry:
                if key == "commonName":
                    return value
        return ""

    @web.middleware
    async def _auth_middleware(self, request, handler):
        if request.path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if self.client_cert_cn and self._client_certificate_user(request) == self.client_cert_cn:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.token}":
            return await handler(request)
        user = self.rbac.user_for(header)
        if user is not None and (
            user.service_account_ref() is None or self._rbac_sa_exists(*user.service_account_ref())
        ):
            if request.path.startswith("/testbed/"):  # the admin API is the admin token's only
                denied = rbac.forbidden_status(user, rbac.request_attributes(request.method, request.path))
            else:
                denied = self.rbac.check(self._rbac_objects, user, request.method, request.path, request.query_string)
            return await handler(request) if denied is None else _json(denied, status=403)
        return _json(ApiError(401, "Unauthorized", "Unauthorized").status(), status=401)

    def _rbac_objects(self, kind, namespace):
        return self.state.objects.list(self.state.type_of("rbac.authorization.k8s.io/v1", kind), namespace or None)

    def _rbac_sa_exists(self, namespace, name) -> bool:
        return self.state.objects.peek(self.state.type_of("v1", "ServiceAccount"), namespace, name) is not None

    @web.middleware
    async def _fault_middleware(self, request, handler):
        if request.path.startswith("/testbed/"):
            return await handler(request)
        for fault in list(self.state.faults):
            if fault.method and fault.method.upper() != request.method:
                continue
            if fault.path_regex and not re.search(fault.path_regex, request.path_qs):
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.state.faults.remove(fault)
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status:
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
                error = ApiError(fault.status, reason.get(fault.status, "InternalError"), fault.message)
                return _json(error.status(), status=fault.status)
            break
        return await handler(request)

    # ---- routing ------------------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [part for part in request.path.split("/") if part]
        try:
            if not parts:
                return _json({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz"]})
            if parts == ["version"]:
                return _json(KUBERNETES_VERSION)
            if parts[0] == "testbed":
                return await self.admin(request, parts[1:])
            if parts[0] == "api":
                if len(parts) == 1:
                    return _json(self._api_versions(request))
                return await self.resource_request(request, "", parts[1], parts[2:])
            if parts[0] == "apis":
                if len(parts) == 1:
                    return _json(self._group_list())
                if len(parts) == 2:
                    group = self._group(parts[1])
                    if group is None:
                        raise ApiError(404, "NotFound", "the server could not find the requested resource")
                    return _json(group)
                return await self.resource_request(request, parts[1], parts[2], parts[3:])
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        except ApiError as error:
            return _status_response(error)
        except selectors.SelectorError as error:
            return _status_response(bad_request(str(error)))

    def _api_versions(self, request) -> dict:
        host = request.host
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }

    def _group(self, name: str) -> dict | None:
        versions = self.state.registry.group_versions().get(name)
        if not versions:
            return None
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _group_list(self) -> dict:
        groups = []
        for name in self.state.registry.group_versions():
            group = self._group(name)
            group.pop("kind")
            group.pop("apiVersion")
            groups.append(group)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    async def resource_request(self, request, group, version, rest):
        registry = self.state.registry
        if not registry.resources_in(group, version) and not (group == "" and version == "v1"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            if request.method != "GET":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return _json(
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{group}/{version}" if group else version,
                    "resources": registry.discovery_resources(group, version),
                }
            )
        namespace = None
        core_namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
        if rest[0] == "namespaces" and len(rest) >= 3 and not core_namespace_subresource:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        tail = "/" + "/".join(rest[3:]) if len(rest) > 3 else "/"
        if request.path.endswith("/") and len(rest) > 3:
            tail += "/"
        try:
            resource_type = registry.lookup(group, version, plural)
        except resources.UnknownResource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource") from None
        try:
            response = await self._serve(request, resource_type, namespace, name, subresource, tail)
        except ApiError as error:
            response = _status_response(error)
        if resource_type.deprecation_warning and not response.prepared:
            response.headers.add("Warning", f'299 - "{resource_type.deprecation_warning}"')
        return response

    async def _serve(self, request, resource_type, namespace, name, subresource, tail):
        """One request on a resource (or its subresource), once its URL is parsed."""
        if namespace is not None and not resource_type.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource and subresource not in resource_type.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "proxy" and resource_type.kind == "Service":
            return await self.service_proxy(request, namespace, name, tail)
        if subresource == "exec":
            return await self.pod_exec(request, namespace, name)
        if subresource == "log":
            return await self.pod_log(request, namespace, name)
        if subresource == "binding":
            return await self.pod_binding(request, resource_type, namespace, name)
        if subresource == "scale":
            return await self.scale(request, resource_type, namespace, name)
        method = request.method
        if method == "GET":
            if not name:
                if _truthy(request.query.get("watch")):
                    return await self.watch(request, resource_type, namespace)
                return self.list_objects(request, resource_type, namespace)
            return _json(self.state.objects.get(resource_type, namespace, name))
        if method == "POST" and not name:
            return await self.create(request, resource_type, namespace)
        if method == "PUT" and name:
            return await self.replace(request, resource_type, namespace, name, subresource)
        if method == "PATCH" and name:
            return await self.patch(request, resource_type, namespace, name, subresource)
        if method == "DELETE":
            if name:
                return await self.delete(request, resource_type, namespace, name)
            return await self.delete_collection(request, resource_type, namespace)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # ---- verbs --------------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request) -> dict:
        raw = await request.read()
        content_type = request.content_type or "application/json"
        try:
            if "yaml" in content_type:
                body = yaml.safe_load(raw.decode() or "{}")
            else:
                body = json.loads(raw.decode() or "{}")
        except (ValueError, yaml.YAMLError) as error:
            raise bad_request(f"the body of the request was in an unknown format: {error}") from None
        if not isinstance(body, (dict, list)):
            raise bad_request("the body of the request must be an object")
        return body

    @staticmethod
    def _write_options(request) -> dict:
        dry_run = request.query.getall("dryRun", [])
        if any(value != "All" for value in dry_run):
            raise bad_request(f'dryRun: Unsupported value: {dry_run!r}: supported values: "All"')
        field_validation = request.query.get("fieldValidation", "Strict")
        if field_validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f'fieldValidation: Unsupported value: "{field_validation}"')
        return {
            "dry_run": bool(dry_run),
            "manager": request.query.get("fieldManager") or _manager_from_agent(request),
            "field_validation": field_validation,
        }

    @staticmethod
    def _warning_headers(warnings) -> dict:
        return {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None

    def list_objects(self, request, resource_type, namespace):
        items = self.state.objects.list(
            resource_type, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
        )
        metadata = {"resourceVersion": str(self.state.objects.current_resource_version)}
        limit = int(request.query.get("limit") or 0)
        start = int(base64.b64decode(request.query["continue"]).decode()) if request.query.get("continue") else 0
        if limit:
            remaining = len(items) - start - limit
            items = items[start : start + limit]
            if remaining > 0:
                metadata["continue"] = base64.b64encode(str(start + limit).encode()).decode()
                metadata["remainingItemCount"] = remaining
        return _json(
            {
                "kind": resource_type.list_kind,
                "apiVersion": resource_type.api_version,
                "metadata": metadata,
                "items": items,
            }
        )

    async def create(self, request, resource_type, namespace):
        body = await self._body(request)
        options = self._write_options(request)
        self._check_kind(body, resource_type)
        created, warnings = self.state.objects.create(resource_type, namespace, body, **options)
        return _json(created, status=201, headers=self._warning_headers(warnings))

    @staticmethod
    def _check_kind(body, resource_type):
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != resource_type.kind) or (api_version and api_version != resource_type.api_version):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource_type.api_version})"
                if api_version != resource_type.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({resource_type.kind})"
            )

    async def replace(self, request, resource_type, namespace, name, subresource):
        body = await self._body(request)
        options = self._write_options(request)
        self._check_kind(body, resource_type)
        updated, warnings = self.state.objects.update(
            resource_type, namespace, name, body, subresource=subresource, **options
        )
        return _json(updated, headers=self._warning_headers(warnings))

    async def patch(self, request, resource_type, namespace, name, subresource):
        patch_type = PATCH_TYPES.get(request.content_type)
        if patch_type is None or (patch_type == "strategic" and resource_type.crd):
            accepted = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            if not resource_type.crd:
                accepted += ", application/strategic-merge-patch+json"
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: {accepted}",
            )
        body = await self._body(request)
        options = self._write_options(request)
        objects = self.state.objects
        live = objects.peek(resource_type, namespace, name)
        definition = (
            None if resource_type.crd else patching.definition_for(resource_type.api_version, resource_type.kind)
        )
        try:
            if patch_type == "apply":
                if not request.query.get("fieldManager"):
                    raise ApiError(
                        422,
                        "Invalid",
                        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                        "value: is required for apply patch",
                    )
                self._check_kind(body, resource_type)
                applied = patching.server_side_apply(
                    copy.deepcopy(live),
                    body,
                    options["manager"],
                    force=_truthy(request.query.get("force")),
                    definition=definition,
                    now=now_rfc3339(),
                )
                if live is None:
                    if subresource:
                        raise not_found(resource_type, name)
                    applied.setdefault("metadata", {})["name"] = name
                    created, warnings = objects.create(
                        resource_type,
                        namespace,
                        applied,
                        dry_run=options["dry_run"],
                        field_validation=options["field_validation"],
                    )
                    return _json(created, status=201, headers=self._warning_headers(warnings))
                options["manager"] = ""  # ownership already recorded by the apply
                patched = applied
            else:
                if live is None:
                    raise not_found(resource_type, name)
                if patch_type == "json":
                    if not isinstance(body, list):
                        raise bad_request("the body of a json patch must be a list of operations")
                    patched = patching.apply_json_patch(live, body)
                elif patch_type == "merge":
                    patched = patching.apply_merge_patch(live, body)
                else:
                    patched = patching.apply_strategic_merge_patch(live, body, definition)
        except patching.PatchError as error:
            reason = {409: "Conflict", 400: "BadRequest"}.get(error.code, "Invalid")
            details = {"causes": error.causes} if error.causes else None
            raise ApiError(error.code, reason, str(error), details) from None
        updated, warnings = objects.update(resource_type, namespace, name, patched, subresource=subresource, **options)
        return _json(updated, headers=self._warning_headers(warnings))

    async def _delete_options(self, request) -> dict:
        options = {}
        if request.can_read_body:
            with contextlib.suppress(ApiError):
                options = await self._body(request)
        propagation = request.query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        dry_run = request.query.getall("dryRun", []) or options.get("dryRun") or []
        grace = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        return {
            "propagation": propagation,
            "dry_run": bool(dry_run),
            "preconditions": options.get("preconditions") or {},
            "grace_period": None if grace in (None, "") else int(grace),
        }

    async def delete(self, request, resource_type, namespace, name):
        options = await self._delete_options(request)
        obj, finished = self.state.objects.delete(resource_type, namespace, name, **options)
        if finished and resource_type.kind not in ("Namespace",):
            return _json(_success_status(resource_type, name, obj["metadata"]["uid"]))
        return _json(obj, status=200 if finished else 202 if resource_type.kind == "Namespace" else 200)

    async def delete_collection(self, request, resource_type, namespace):
        options = await self._delete_options(request)
        objects = self.state.objects
        items = objects.list(
            resource_type, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
        )
        for item in items:
            with contextlib.suppress(ApiError):
                objects.delete(resource_type, item["metadata"].get("namespace"), item["metadata"]["name"], **options)
        return _json(
            {
                "kind": resource_type.list_kind,
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": str(objects.current_resource_version)},
                "items": items,
            }
        )

    async def scale(self, request, resource_type, namespace, name):
        objects = self.state.objects
        obj = objects.get(resource_type, namespace, name)
        if request.method in ("PUT", "PATCH"):
            body = await self._body(request)
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                    f"{replicas!r}: must be greater than or equal to 0",
                )
            obj["spec"]["replicas"] = replicas
            obj, dummy = objects.update(resource_type, namespace, name, obj, **self._write_options(request))
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return _json(
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                },
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {
                    "replicas": (obj.get("status") or {}).get("replicas", 0),
                    "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
                },
            }
        )

    async def pod_binding(self, request, resource_type, namespace, name):
        body = await self._body(request)
        target = (body.get("target") or {}).get("name")
        objects = self.state.objects
        pod = objects.get(resource_type, namespace, name)
        if pod["spec"].get("nodeName"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                f'already assigned to node "{pod["spec"]["nodeName"]}"',
            )
        pod["spec"]["nodeName"] = target
        objects.update(resource_type, namespace, name, pod, manager="kube-scheduler")
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    # ---- watch --------------------------------------------------------------------------------------------
    async def watch(self, request, resource_type, namespace):
        objects = self.state.objects
        labels = selectors.parse_label_selector(request.query.get("labelSelector"))
        fields = selectors.parse_field_selector(request.query.get("fieldSelector"))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        since = request.query.get("resourceVersion") or ""

        def matches(obj):
            if obj is None:
                return False
            if namespace and obj["metadata"].get("namespace") != namespace:
                return False
            return selectors.labels_match(labels, obj["metadata"].get("labels")) and selectors.fields_match(fields, obj)

        def translate(event):
            """The event this watcher sees, given its filters (objects moving in/out of the selection)."""
            now_in, was_in = matches(event.object), matches(event.old_object)
            if event.type == "DELETED":
                return ("DELETED", event.object) if was_in or now_in else None
            if now_in and not was_in:
                return ("ADDED", event.object)
            if now_in:
                return ("MODIFIED", event.object)
            if was_in:
                return ("DELETED", event.object)
            return None

        queue = asyncio.Queue()

        def listener(event):
            if event.type_key == resource_type.key:
                queue.put_nowait(event)

        headers = {"Content-Type": "application/json"}
        if resource_type.deprecation_warning:
            headers["Warning"] = f'299 - "{resource_type.deprecation_warning}"'
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(event_type, obj):
            if obj.get("apiVersion"):  # events carry the stored object; this watch serves its own version
                obj = dict(obj, apiVersion=resource_type.api_version)
            await response.write((json.dumps({"type": event_type, "object": obj}) + "\n").encode())

        objects.add_listener(listener)
        try:
            initial = []
            last_sent = objects.current_resource_version
            if since and since != "0":
                if int(since) < objects.compacted_below - 1:
                    gone = ApiError(
                        410, "Expired", f"too old resource version: {since} ({objects.compacted_below - 1})"
                    )
                    await send("ERROR", gone.status())
                    return response
                for event in list(objects.history):
                    if event.type_key == resource_type.key and event.resource_version > int(since):
                        seen = translate(event)
                        if seen:
                            initial.append(seen)
            else:
                initial = [("ADDED", obj) for obj in objects.list(resource_type, namespace, labels, fields)]
            for event_type, obj in initial:
                await send(event_type, obj)
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if event.resource_version <= last_sent:
                    continue
                seen = translate(event)
                if seen:
                    await send(*seen)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            objects.remove_listener(listener)
        return response

    # ---- pods and services ----------------------------------------------------------------------------------
    def _pod(self, namespace, name) -> dict:
        return self.state.objects.get(self.state.type_of("v1", "Pod"), namespace, name)

    def _lookup(self, kind, namespace, name):
        resource_type = self.state.type_of("v1", kind)
        stored = self.state.objects.peek(resource_type, namespace, name)
        return copy.deepcopy(stored) if stored else None

    @staticmethod
    def _container(pod, container_name) -> dict:
        containers = pod["spec"].get("containers") or []
        if not container_name:
            if len(containers) > 1:
                names = " ".join(c["name"] for c in containers)
                raise bad_request(
                    f"a container name must be specified for pod {pod['metadata']['name']}, choose one of: [{names}]"
                )
            return containers[0]
        for container in containers + (pod["spec"].get("initContainers") or []):
            if container["name"] == container_name:
                return container
        raise bad_request(f"container {container_name} is not valid for pod {pod['metadata']['name']}")

    async def pod_exec(self, request, namespace, name):
        pod = self._pod(namespace, name)
        command, container_name, stdin, stdout, stderr, tty = pod_exec.exec_query(request)
        container = self._container(pod, container_name)
        streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "tty": tty}
        runtime = self.state.runtime
        if runtime is not None and runtime.manages(pod["metadata"]["uid"]) and command:
            # A real container, init containers included, whatever the pod's phase: it runs or it does not.
            argv = runtime.exec_argv(pod["metadata"]["uid"], container["name"], command)
            if argv is None:
                raise bad_request(f'unable to upgrade connection: container not found ("{container["name"]}")')
            return await pod_exec.serve_exec(
                request, pod, container["name"], command, env={}, workdir="", argv=argv, **streams
            )
        if (pod.get("status") or {}).get("phase") != "Running":
            raise bad_request(
                f"pod {name} does not have a host assigned"
                if not pod["spec"].get("nodeName")
                else f"container {container['name']} is not running"
            )
        if not command:
            raise bad_request("you must specify at least 1 command")
        try:
            env = pod_env.container_environment(pod, container, self._lookup)
        except pod_env.EnvResolutionError as error:
            raise ApiError(500, "InternalError", f"container {container['name']} cannot start: {error}") from None
        workdir = os.path.join(self.state.exec_root, namespace, name, container["name"])
        return await pod_exec.serve_exec(request, pod, container["name"], command, env=env, workdir=workdir, **streams)

    async def pod_log(self, request, namespace, name):
        pod = self._pod(namespace, name)
        try:
            options = pod_exec.log_query(request)
        except ValueError as error:
            raise bad_request(str(error)) from None
        container = self._container(pod, options.container or "")
        source = self._log_source(pod, container["name"], options.previous)
        return await pod_exec.serve_log(
            request,
            source,
            options.follow,
            tail_lines=options.tail_lines,
            timestamps=options.timestamps,
            since_seconds=options.since_seconds,
            since_time=options.since_time,
            limit_bytes=options.limit_bytes,
        )

    def _log_source(self, pod, container_name, previous):
        """A callable giving the container's log lines: the real log of a pod that runs, else the recorded one."""
        runtime, uid = self.state.runtime, pod["metadata"]["uid"]
        if runtime is not None and runtime.manages(uid):
            try:
                runtime.log_lines(uid, container_name, previous)
            except LookupError as error:
                raise bad_request(str(error)) from None
            return lambda: runtime.log_lines(uid, container_name, previous) or []
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"], container_name)
        return lambda: list(self.state.pod_logs.get(key, []))

    async def service_proxy(self, request, namespace, name_port, tail):
        try:
            _scheme, name, port = service_proxy.parse_proxy_target(name_port)
            target = self._mapped_service_backend(namespace, name, port)
            if target is None:
                target = self._service_endpoint(namespace, name_port, name, port)
        except service_proxy.ProxyError as error:
            raise ApiError(error.code, error.reason, str(error)) from None
        # The real server drops the client's Authorization header once it has authenticated the request.
        return await service_proxy.proxy_request(request, target, tail, strip_authorization=True)

    def _mapped_service_backend(self, namespace, name, port):
        """The URL a test mapped to this Service port with the admin API (it wins over the Endpoints), or None."""
        service = self.state.objects.peek(self.state.type_of("v1", "Service"), namespace, name)
        if service is None:
            return None
        candidates = [port]
        with contextlib.suppress(service_proxy.ProxyError):
            entry = service_proxy.resolve_service_port(service, port)
            candidates += [str(entry.get("port")), entry.get("name") or ""]
        backends = self.state.service_backends
        return next((backends[(namespace, name, c)] for c in candidates if (namespace, name, c) in backends), None)

    def _service_endpoint(self, namespace, name_port, name, port):
        """Where kube-apiserver would send the request: a ready endpoint of the Service's Endpoints object."""
        objects = self.state.objects
        port_name = port
        if service_proxy.is_port_number(port):  # only a number needs the Service, to learn the port's name
            service = objects.get(self.state.type_of("v1", "Service"), namespace, name)
            port_name = service_proxy.resolve_service_port(service, port).get("name") or ""
        endpoints = objects.get(self.state.type_of("v1", "Endpoints"), namespace, name)
        pod_type = self.state.type_of("v1", "Pod")
        return service_proxy.endpoint_base_url(
            endpoints, name_port, port_name, lambda pod_name: objects.peek(pod_type, namespace, pod_name)
        )

    # ---- /testbed/v1 admin API ----------------------------------------------------------------------------
    async def admin(self, request, parts):
        if parts[:1] != ["v1"]:
            raise ApiError(404, "NotFound", "unknown test bed endpoint")
        parts = parts[1:]
        state = self.state
        body = await self._body(request) if request.method in ("POST", "PUT") and request.can_read_body else {}
        if parts == ["state"] and request.method == "GET":
            return _json(
                {
                    "controllers": self.enabled,
                    "resourceVersion": state.objects.current_resource_version,
                    "faults": [vars(f) for f in state.faults],
                    "serviceBackends": {
                        f"{ns}/{svc}:{port}": url for (ns, svc, port), url in state.service_backends.items()
                    },
                    "notReadyNodes": sorted(state.not_ready_nodes),
                    "crashLoopingPods": [f"{ns}/{name}" for ns, name in state.crashlooping_pods],
                }
            )
        if parts[:1] == ["controllers"] and len(parts) == 2 and request.method == "PUT":
            if parts[1] not in self.enabled:
                raise ApiError(404, "NotFound", f"no controller {parts[1]!r}; known: {sorted(self.enabled)}")
            self.enabled[parts[1]] = bool(body.get("enabled"))
            self.reconcile_soon()
            return _json({"controllers": self.enabled})
        if parts == ["service-backends"] and request.method == "PUT":
            for key, url in body.items():
                match = re.fullmatch(r"([^/]+)/([^:]+):(.+)", key)
                if not match:
                    raise bad_request(f"service backend key {key!r} must look like <namespace>/<service>:<port>")
                if url:
                    state.service_backends[match.groups()] = url
                else:
                    state.service_backends.pop(match.groups(), None)
            return _json({"serviceBackends": len(state.service_backends)})
        if parts == ["faults"] and request.method == "POST":
            fault = Fault(**body)
            state.faults.append(fault)
            return _json(vars(fault), status=201)
        if parts == ["faults"] and request.method == "DELETE":
            state.faults.clear()
            return _json({})
        if parts == ["outcomes"] and request.method == "POST":
            state.requested_outcomes[(body["kind"], body["namespace"], body["name"])] = {
                "outcome": body.get("outcome", "Failed"),
                "log": body.get("log", ""),
            }
            self.reconcile_soon()
            return _json(body, status=201)
        if parts[:1] == ["pods"] and len(parts) == 4 and parts[3] == "crashloop":
            key = (parts[1], parts[2])
            if request.method == "DELETE":
                state.crashlooping_pods.pop(key, None)
            else:
                state.crashlooping_pods[key] = body.get("reason", "Error")
            self.reconcile_soon()
            return _json({"crashLoopingPods": len(state.crashlooping_pods)})
        if parts[:1] == ["pods"] and len(parts) == 4 and parts[3] == "log" and request.method == "POST":
            for line in str(body.get("text", "")).splitlines():
                state.append_log(parts[1], parts[2], body.get("container", ""), line)
            return _json({}, status=201)
        if parts[:1] == ["nodes"] and len(parts) == 3 and parts[2] == "ready":
            if body.get("ready", True):
                state.not_ready_nodes.discard(parts[1])
            else:
                state.not_ready_nodes.add(parts[1])
            self.reconcile_soon()
            return _json({"notReadyNodes": sorted(state.not_ready_nodes)})
        if parts[:1] in (["rbac"], ["tokens"]):
            try:
                answer, code = self.rbac.admin(request.method, parts, body, self._rbac_sa_exists)
            except ValueError as error:
                raise bad_request(str(error)) from None
            except LookupError:
                raise ApiError(404, "NotFound", f"unknown test bed endpoint {request.method} {request.path}") from None
            return _json(answer, status=code)
        if parts == ["compact"] and request.method == "POST":
            state.objects.compact()
            return _json({"compactedBelow": state.objects.compacted_below})
        raise ApiError(404, "NotFound", f"unknown test bed endpoint {request.method} /testbed/v1/{'/'.join(parts)}")


def _manager_from_agent(request) -> str:
    """The field manager the real server derives from the User-Agent when none is given (the program name)."""
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/", 1)[0][:128] or "unknown"


def kubeconfig(server_url: str, token: str, ca_path: str, client_cert: str = "", client_key: str = "") -> dict:
    """The kubeconfig a client uses: a bearer-token user (default context) and a client-certificate user."""

    def data(path):
        with open(path, "rb") as handle:
            return base64.b64encode(handle.read()).decode()

    users = [{"name": "testbed-token", "user": {"token": token}}]
    contexts = [{"name": "testbed", "context": {"cluster": "testbed", "user": "testbed-token", "namespace": "default"}}]
    if client_cert:
        users.append(
            {
                "name": "testbed-cert",
                "user": {"client-certificate-data": data(client_cert), "client-key-data": data(client_key)},
            }
        )
        contexts.append(
            {"name": "testbed-cert", "context": {"cluster": "testbed", "user": "testbed-cert", "namespace": "default"}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "testbed", "cluster": {"server": server_url, "certificate-authority-data": data(ca_path)}}
        ],
        "users": users,
        "contexts": contexts,
        "current-context": "testbed",
        "preferences": {},
    }


def ssl_context_or_none(paths: dict | None) -> ssl.SSLContext | None:
    if not paths:
        return None
    from . import tls

    return tls.server_context(paths)
