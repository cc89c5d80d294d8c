# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An in-memory AWX API v2 double (aiohttp), enough for the awx.awx 24.6.1 modules this collection uses.

Field defaults, named URLs and validation follow AWX 24.6.1 (awx/main/models/*.py, awx/api/serializers.py,
awx/api/views/__init__.py, awx/settings/defaults.py NAMED_URL_FORMATS); see README.md for what is left out.
Start it with start() from Python or `python -m awx_double.server --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import dataclasses
import datetime
import os
import secrets
import threading
from typing import Any, Callable
from urllib.parse import unquote

from aiohttp import web

from . import rules

AWX_VERSION = "24.6.1"
API = "/api/v2/"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One AWX resource: its endpoint, type name, writable field defaults, foreign keys and related lists."""

    endpoint: str
    type: str
    fields: dict
    fks: dict = dataclasses.field(default_factory=dict)
    lists: tuple = ()
    named: Callable | None = None


def _org_name(store: Store, obj: dict) -> str:
    org = store.get("organizations", obj.get("organization"))
    return org["name"] if org else ""


def _named_with_org(store: Store, obj: dict) -> str:
    return "{}++{}".format(obj["name"], _org_name(store, obj))


def _named_credential_type(store: Store, obj: dict) -> str:
    return "{}+{}".format(obj["name"], obj["kind"])


def _named_credential(store: Store, obj: dict) -> str:
    ctype = store.get("credential_types", obj.get("credential_type")) or {"name": "", "kind": ""}
    return "{}++{}++{}".format(obj["name"], _named_credential_type(store, ctype), _org_name(store, obj))


def _named_inventory_source(store: Store, obj: dict) -> str:
    inventory = store.get("inventories", obj.get("inventory")) or {"name": "", "organization": None}
    return "{}++{}".format(obj["name"], _named_with_org(store, inventory))


NOTIFICATION_LISTS = (
    "notification_templates_started",
    "notification_templates_success",
    "notification_templates_error",
)
UJT_COMMON = {"name": "", "description": "", "last_job_run": None, "last_job_failed": False, "next_job_run": None}
ASK_FIELDS = (
    "ask_scm_branch_on_launch",
    "ask_diff_mode_on_launch",
    "ask_variables_on_launch",
    "ask_limit_on_launch",
    "ask_tags_on_launch",
    "ask_skip_tags_on_launch",
    "ask_job_type_on_launch",
    "ask_verbosity_on_launch",
    "ask_inventory_on_launch",
    "ask_credential_on_launch",
    "ask_execution_environment_on_launch",
    "ask_labels_on_launch",
    "ask_forks_on_launch",
    "ask_job_slice_count_on_launch",
    "ask_timeout_on_launch",
    "ask_instance_groups_on_launch",
)

# Writable fields and their defaults per kind, from the AWX 24.6.1 models (awx/main/models/*.py).
KINDS = {
    k.endpoint: k
    for k in (
        Kind(
            "organizations",
            "organization",
            {"name": "", "description": "", "max_hosts": 0, "custom_virtualenv": None, "default_environment": None},
            fks={"default_environment": "execution_environments"},
            lists=("instance_groups", "galaxy_credentials", "notification_templates_approvals", *NOTIFICATION_LISTS),
            named=lambda store, obj: obj["name"],
        ),
        Kind(
            "execution_environments",
            "execution_environment",
            {
                "name": "",
                "description": "",
                "organization": None,
                "image": "",
                "managed": False,
                "credential": None,
                "pull": "",
            },
            fks={"organization": "organizations", "credential": "credentials"},
            named=lambda store, obj: obj["name"],
        ),
        Kind(
            "projects",
            "project",
            {
                **UJT_COMMON,
                "local_path": "",
                "scm_type": "",
                "scm_url": "",
                "scm_branch": "",
                "scm_refspec": "",
                "scm_clean": False,
                "scm_track_submodules": False,
                "scm_delete_on_update": False,
                "credential": None,
                "timeout": 0,
                "scm_revision": "",
                "status": "ok",
                "organization": None,
                "scm_update_on_launch": False,
                "scm_update_cache_timeout": 0,
                "allow_override": False,
                "custom_virtualenv": None,
                "default_environment": None,
                "signature_validation_credential": None,
                "last_update_failed": False,
                "last_updated": None,
            },
            fks={
                "organization": "organizations",
                "credential": "credentials",
                "default_environment": "execution_environments",
                "signature_validation_credential": "credentials",
            },
            lists=NOTIFICATION_LISTS,
            named=_named_with_org,
        ),
        Kind(
            "inventories",
            "inventory",
            {
                "name": "",
                "description": "",
                "organization": None,
                "kind": "",
                "host_filter": None,
                "variables": "",
                "has_active_failures": False,
                "total_hosts": 0,
                "hosts_with_active_failures": 0,
                "total_groups": 0,
                "has_inventory_sources": False,
                "total_inventory_sources": 0,
                "inventory_sources_with_failures": 0,
                "pending_deletion": False,
                "prevent_instance_group_fallback": False,
            },
            fks={"organization": "organizations"},
            lists=("instance_groups", "input_inventories"),
            named=_named_with_org,
        ),
        Kind(
            "inventory_sources",
            "inventory_source",
            {
                **UJT_COMMON,
                "source": "",
                "source_path": "",
                "source_vars": "",
                "scm_branch": "",
                "credential": None,
                "enabled_var": "",
                "enabled_value": "",
                "host_filter": "",
                "overwrite": False,
                "overwrite_vars": False,
                "custom_virtualenv": None,
                "timeout": 0,
                "verbosity": 1,
                "limit": "",
                "status": "never updated",
                "execution_environment": None,
                "inventory": None,
                "update_on_launch": False,
                "update_cache_timeout": 0,
                "source_project": None,
                "last_update_failed": False,
                "last_updated": None,
            },
            fks={
                "credential": "credentials",
                "execution_environment": "execution_environments",
                "inventory": "inventories",
                "source_project": "projects",
            },
            lists=NOTIFICATION_LISTS,
            named=_named_inventory_source,
        ),
        Kind(
            "credential_types",
            "credential_type",
            {
                "name": "",
                "description": "",
                "kind": "cloud",
                "namespace": None,
                "managed": False,
                "inputs": {},
                "injectors": {},
            },
            named=_named_credential_type,
        ),
        Kind(
            "credentials",
            "credential",
            {
                "name": "",
                "description": "",
                "organization": None,
                "credential_type": None,
                "managed": False,
                "inputs": {},
                "kind": "",
                "cloud": False,
                "kubernetes": False,
            },
            fks={"organization": "organizations", "credential_type": "credential_types"},
            named=_named_credential,
        ),
        Kind(
            "job_templates",
            "job_template",
            {
                **UJT_COMMON,
                "job_type": "run",
                "inventory": None,
                "project": None,
                "playbook": "",
                "scm_branch": "",
                "forks": 0,
                "limit": "",
                "verbosity": 0,
                "extra_vars": "",
                "job_tags": "",
                "force_handlers": False,
                "skip_tags": "",
                "start_at_task": "",
                "timeout": 0,
                "use_fact_cache": False,
                "organization": None,
                "status": "never updated",
                "execution_environment": None,
                "host_config_key": "",
                **dict.fromkeys(ASK_FIELDS, False),
                "survey_enabled": False,
                "become_enabled": False,
                "diff_mode": False,
                "allow_simultaneous": False,
                "custom_virtualenv": None,
                "job_slice_count": 1,
                "webhook_service": "",
                "webhook_credential": None,
                "prevent_instance_group_fallback": False,
            },
            fks={
                "inventory": "inventories",
                "project": "projects",
                "execution_environment": "execution_environments",
                "webhook_credential": "credentials",
                "organization": "organizations",
            },
            lists=("credentials", "labels", "instance_groups", *NOTIFICATION_LISTS),
            named=_named_with_org,
        ),
        Kind(
            "workflow_job_templates",
            "workflow_job_template",
            {
                **UJT_COMMON,
                "status": "never updated",
                "extra_vars": "",
                "organization": None,
                "survey_enabled": False,
                "allow_simultaneous": False,
                "ask_variables_on_launch": False,
                "inventory": None,
                "limit": None,
                "scm_branch": None,
                "ask_inventory_on_launch": False,
                "ask_scm_branch_on_launch": False,
                "ask_limit_on_launch": False,
                "ask_labels_on_launch": False,
                "ask_skip_tags_on_launch": False,
                "ask_tags_on_launch": False,
                "webhook_service": "",
                "webhook_credential": None,
                "job_tags": None,
                "skip_tags": None,
            },
            fks={"organization": "organizations", "inventory": "inventories", "webhook_credential": "credentials"},
            lists=("labels", "notification_templates_approvals", *NOTIFICATION_LISTS),
            named=_named_with_org,
        ),
        Kind(
            "workflow_job_template_nodes",
            "workflow_job_template_node",
            {
                "extra_data": {},
                "inventory": None,
                "scm_branch": None,
                "job_type": None,
                "job_tags": None,
                "skip_tags": None,
                "limit": None,
                "diff_mode": None,
                "verbosity": None,
                "execution_environment": None,
                "forks": None,
                "job_slice_count": None,
                "timeout": None,
                "workflow_job_template": None,
                "unified_job_template": None,
                "all_parents_must_converge": False,
                "identifier": "",
            },
            fks={
                "inventory": "inventories",
                "execution_environment": "execution_environments",
                "workflow_job_template": "workflow_job_templates",
                "unified_job_template": "unified_job_templates",
            },
            lists=("success_nodes", "failure_nodes", "always_nodes", "credentials", "labels", "instance_groups"),
        ),
        Kind("labels", "label", {"name": "", "organization": None}, fks={"organization": "organizations"}),
        Kind("instance_groups", "instance_group", {"name": ""}, named=lambda store, obj: obj["name"]),
        Kind("notification_templates", "notification_template", {"name": "", "organization": None}),
        Kind("project_updates", "project_update", {"name": "", "project": None, "status": "successful"}),
        Kind("inventory_updates", "inventory_update", {"name": "", "inventory_source": None, "status": "successful"}),
    )
}
# AWX answers a node's success/failure/always lists inside the node itself, as ids.
NODE_LISTS_IN_BODY = ("success_nodes", "failure_nodes", "always_nodes")
UJT_ENDPOINTS = ("job_templates", "workflow_job_templates", "projects", "inventory_sources")
SCM_FIELDS = ("scm_type", "scm_url", "scm_branch", "scm_refspec")
READ_ONLY = {"id", "type", "url", "related", "summary_fields", "created", "modified", "managed"}
# Inventories go away in the background in AWX, so their DELETE answers 202; the rest answer 204.
DELETE_STATUS = {"inventories": 202}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    """An AWX-like error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict):
        super().__init__(body)
        self.status = status
        self.body = body


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


class Store:
    """Objects per endpoint, each a dict of AWX fields, plus the many-to-many lists (endpoint, id, list) -> ids."""

    def __init__(self, project_dirs: dict[str, str] | None = None):
        self.project_dirs = dict(project_dirs or {})
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[int, dict]] = {endpoint: {} for endpoint in KINDS}
        self.links: dict[tuple, list[int]] = {}
        self.survey_specs: dict[tuple, dict] = {}
        self.tokens: dict[str, int] = {}
        self.next_id = 1
        # A fresh AWX install has the Default organization (awx-manage create_preload_data).
        self.create("organizations", {"name": "Default"})

    def get(self, endpoint: str, pk: Any) -> dict | None:
        if pk is None:
            return None
        if endpoint == "unified_job_templates":
            return next((self.objects[e][int(pk)] for e in UJT_ENDPOINTS if int(pk) in self.objects[e]), None)
        return self.objects[endpoint].get(int(pk))

    def create(self, endpoint: str, data: dict) -> dict:
        kind = KINDS[endpoint]
        obj = copy.deepcopy(kind.fields)
        pk = self.next_id
        self.next_id += 1
        stamp = _now()
        obj.update({"id": pk, "type": kind.type, "url": f"{API}{endpoint}/{pk}/", "created": stamp})
        obj.update(data)
        obj["modified"] = stamp
        self.objects[endpoint][pk] = obj
        return obj


def coerce(kind: Kind, data: dict) -> dict:
    """Input values as AWX's serializer fields turn them (awx/api/fields.py 24.6.1 CharNullField, BooleanNullField)."""
    result = {}
    for name, value in data.items():
        if name not in kind.fields or name in READ_ONLY:
            continue  # DRF ignores fields a serializer does not have, and read-only ones
        default = kind.fields[name]
        if isinstance(default, bool):
            value = bool(value) if value not in ("", None) else False
        elif isinstance(default, str) and name not in kind.fks:
            value = "" if value is None else value
        result[name] = value
    return result


class Api:
    """The request handlers; every one runs under the store lock, so the double answers one request at a time."""

    def __init__(self, store: Store, username: str, password: str):
        self.store = store
        self.username = username
        self.password = password

    # --- authentication: awx.awx's controller_api POSTs /api/v2/tokens/ with basic auth, then uses the Bearer token.

    def authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :] in self.store.tokens
        if header.startswith("Basic "):
            user, _colon, password = base64.b64decode(header[len("Basic ") :]).decode().partition(":")
            return (user, password) == (self.username, self.password)
        return False

    def create_token(self) -> dict:
        token = secrets.token_urlsafe(24)
        pk = self.store.next_id
        self.store.next_id += 1
        self.store.tokens[token] = pk
        return {
            "id": pk,
            "type": "o_auth2_access_token",
            "url": f"{API}tokens/{pk}/",
            "token": token,
            "scope": "write",
        }

    def delete_token(self, pk: int) -> None:
        for token, token_id in list(self.store.tokens.items()):
            if token_id == pk:
                del self.store.tokens[token]
                return
        raise not_found()

    # --- fixed endpoints of the handshake

    def fixed(self, path: str) -> dict | None:
        me = {"id": 1, "type": "user", "username": self.username, "is_superuser": True, "is_system_auditor": False}
        answers = {
            "": {"description": "AWX REST API", "current_version": API, "available_versions": {"v2": API}},
            "v2/": {endpoint: f"{API}{endpoint}/" for endpoint in KINDS},
            "v2/ping/": {"ha": False, "version": AWX_VERSION, "active_node": "awx-double", "install_uuid": "double"},
            "v2/config/": {"version": AWX_VERSION, "license_info": {}, "analytics_status": "off"},
            "v2/me/": {"count": 1, "next": None, "previous": None, "results": [me]},
        }
        return answers.get(path)

    # --- representation

    def represent(self, endpoint: str, obj: dict) -> dict:
        body = copy.deepcopy(obj)
        kind = KINDS[endpoint]
        base = obj["url"]
        related = {name: f"{base}{name}/" for name in kind.lists}
        for fk, target in kind.fks.items():
            if obj.get(fk) is not None:
                related[fk] = self._object_url(target, obj[fk])
        if endpoint in ("job_templates", "workflow_job_templates"):
            related.update(survey_spec=base + "survey_spec/", launch=base + "launch/", copy=base + "copy/")
        if endpoint in ("projects", "inventory_sources"):
            related.update(update=base + "update/")
        if endpoint == "projects":
            related["playbooks"] = base + "playbooks/"
        if endpoint == "workflow_job_templates":
            related["workflow_nodes"] = base + "workflow_nodes/"
        body["related"] = related
        body["summary_fields"] = self._summary(endpoint, obj)
        if endpoint == "credentials":
            body["inputs"] = self._hide_secrets(obj)
        if endpoint == "workflow_job_template_nodes":
            for name in NODE_LISTS_IN_BODY:
                body[name] = list(self.store.links.get((endpoint, obj["id"], name), []))
        return body

    def _object_url(self, endpoint: str, pk: int) -> str:
        target = self.store.get(endpoint, pk)
        return target["url"] if target else f"{API}{endpoint}/{pk}/"

    def _summary(self, endpoint: str, obj: dict) -> dict:
        summary: dict = {"user_capabilities": {"edit": True, "delete": True}}
        for fk, target in KINDS[endpoint].fks.items():
            other = self.store.get(target, obj.get(fk))
            if other:
                summary[fk] = {"id": other["id"], "name": other.get("name", ""), "type": other["type"]}
        if obj.get("current_update"):
            summary["current_update"] = obj["current_update"]
        return summary

    def _hide_secrets(self, credential: dict) -> dict:
        # AWX shows every secret input as $encrypted$ (awx/api/serializers.py CredentialSerializer.to_representation).
        ctype = self.store.get("credential_types", credential.get("credential_type")) or {"inputs": {}}
        secret_ids = {f["id"] for f in ctype["inputs"].get("fields", []) if f.get("secret")}
        return {
            k: (rules.ENCRYPTED if k in secret_ids and v not in ("", None) else v)
            for k, v in credential["inputs"].items()
        }

    # --- lists and lookups

    def list_objects(self, endpoint: str, query: dict) -> dict:
        if endpoint == "unified_job_templates":
            pairs = [(e, o) for e in UJT_ENDPOINTS for o in self.store.objects[e].values()]
        elif endpoint in KINDS:
            pairs = [(endpoint, o) for o in self.store.objects[endpoint].values()]
        else:
            raise not_found()
        chosen = [(e, o) for e, o in sorted(pairs, key=lambda p: p[1]["id"]) if self._matches(o, query)]
        return self._page([self.represent(e, o) for e, o in chosen])

    @staticmethod
    def _page(results: list) -> dict:
        return {"count": len(results), "next": None, "previous": None, "results": results}

    @staticmethod
    def _matches(obj: dict, query: dict) -> bool:
        # AWX's field lookups: plain ones must all hold, or__ ones are alternatives (awx/api/filters.py).
        plain = {
            k: v for k, v in query.items() if not k.startswith("or__") and k not in ("page", "page_size", "order_by")
        }
        alternatives = {k[len("or__") :]: v for k, v in query.items() if k.startswith("or__")}
        for field, value in plain.items():
            if field not in obj:
                raise ApiError(400, {"detail": f"{field} is not an allowed field name. Must be ascii encodable."})
            if str(obj[field]) != value:
                return False
        return not alternatives or any(str(obj.get(f)) == v for f, v in alternatives.items())

    def find(self, endpoint: str, key: str) -> dict:
        """An object by id or by AWX named URL (awx/settings/defaults.py 24.6.1 NAMED_URL_FORMATS)."""
        if endpoint not in KINDS:
            raise not_found()
        if key.isdigit():
            obj = self.store.get(endpoint, int(key))
        else:
            named = KINDS[endpoint].named
            wanted = unquote(key)
            obj = next(
                (o for o in self.store.objects[endpoint].values() if named and named(self.store, o) == wanted), None
            )
        if obj is None:
            raise not_found()
        return obj

    # --- writes

    def create(self, endpoint: str, data: dict) -> dict:
        if endpoint not in KINDS or endpoint in ("project_updates", "inventory_updates"):
            raise ApiError(405, {"detail": 'Method "POST" not allowed.'})
        kind = KINDS[endpoint]
        values = coerce(kind, data)
        self.validate(endpoint, values, None)
        if endpoint == "workflow_job_template_nodes" and not values.get("identifier"):
            values["identifier"] = secrets.token_hex(16)
        obj = self.store.create(endpoint, values)
        self._after_save(endpoint, obj, set(values))
        return obj

    def update(self, endpoint: str, obj: dict, data: dict) -> dict:
        values = coerce(KINDS[endpoint], data)
        self.validate(endpoint, values, obj)
        changed = {k for k, v in values.items() if obj.get(k) != v}
        obj.update(values)
        obj["modified"] = _now()
        self._after_save(endpoint, obj, changed)
        return obj

    def validate(self, endpoint: str, values: dict, instance: dict | None) -> None:
        merged = {**KINDS[endpoint].fields, **(instance or {}), **values}
        errors = self._fk_errors(endpoint, values) or self._unique_errors(endpoint, merged, instance)
        checker = VALIDATORS.get(endpoint)
        if not errors and checker:
            errors = checker(self, merged, values, instance)
        if errors:
            raise ApiError(400, errors)

    def _fk_errors(self, endpoint: str, values: dict) -> dict:
        errors = {}
        for fk, target in KINDS[endpoint].fks.items():
            if values.get(fk) not in (None, "") and self.store.get(target, values[fk]) is None:
                errors[fk] = [f'Invalid pk "{values[fk]}" - object does not exist.']
        return errors

    def _unique_errors(self, endpoint: str, merged: dict, instance: dict | None) -> dict:
        # AWX's unique-together rules on name: per organization for most kinds, global for organizations.
        scope = {
            "organizations": (),
            "projects": ("organization",),
            "inventories": ("organization",),
            "job_templates": ("organization",),
            "workflow_job_templates": ("organization",),
            "credential_types": ("kind",),
            "credentials": ("organization", "credential_type"),
            "execution_environments": (),
            "inventory_sources": ("inventory",),
        }.get(endpoint)
        if scope is None:
            return {}
        for other in self.store.objects[endpoint].values():
            same = other["name"] == merged["name"] and all(other.get(f) == merged.get(f) for f in scope)
            if same and (instance is None or other["id"] != instance["id"]):
                label = KINDS[endpoint].type.replace("_", " ").title().replace(" ", " ")
                if scope:
                    return {
                        "__all__": [
                            "{} with this {} already exists.".format(
                                label, " and ".join(("Name", *[f.title() for f in scope]))
                            )
                        ]
                    }
                return {"name": [f"{label} with this Name already exists."]}
        return {}

    def _after_save(self, endpoint: str, obj: dict, changed: set) -> None:
        if endpoint == "projects" and obj["scm_type"] and (changed & set(SCM_FIELDS) or "current_update" not in obj):
            self.run_project_update(obj)
        if endpoint == "job_templates":
            project = self.store.get("projects", obj.get("project"))
            obj["organization"] = project["organization"] if project else None

    def run_project_update(self, project: dict) -> dict:
        """AWX starts a project update on create and on SCM changes; the double finishes it at once, successfully."""
        update = self.store.create("project_updates", {"name": project["name"], "project": project["id"]})
        stamp = _now()
        project_dir = self.project_dir(project)
        playbooks = rules.project_playbooks(project_dir) if project_dir else []
        failed = project_dir is None
        update.update(
            status="failed" if failed else "successful",
            failed=failed,
            started=stamp,
            finished=stamp,
            elapsed=0.0,
            event_processing_finished=True,
            scm_revision="" if failed else "0" * 40,
        )
        project.update(
            playbook_files=playbooks,
            scm_revision=update["scm_revision"],
            status=update["status"],
            last_updated=stamp,
            last_job_run=stamp,
            last_update_failed=failed,
            current_update={"id": update["id"], "status": update["status"], "failed": failed},
        )
        return update

    def project_dir(self, project: dict) -> str | None:
        """The local checkout standing for a project: project_dirs keyed by scm_url, name or local_path."""
        for key in (project.get("scm_url"), project.get("name"), project.get("local_path")):
            if key and key in self.store.project_dirs:
                return self.store.project_dirs[key]
        return None

    def playbooks(self, project: dict) -> list[str]:
        if project["scm_type"]:
            return list(project.get("playbook_files", []))
        project_dir = self.project_dir(project)
        return rules.project_playbooks(project_dir) if project_dir else []

    def delete(self, endpoint: str, obj: dict) -> None:
        del self.store.objects[endpoint][obj["id"]]
        for key in [k for k in self.store.links if k[:2] == (endpoint, obj["id"])]:
            del self.store.links[key]
        self.store.survey_specs.pop((endpoint, obj["id"]), None)

    # --- related lists

    def related_list(self, endpoint: str, obj: dict, name: str) -> dict:
        target = self._list_target(endpoint, name)
        ids = self.store.links.get((endpoint, obj["id"], name), [])
        return self._page(
            [self.represent(target, self.store.get(target, pk)) for pk in ids if self.store.get(target, pk)]
        )

    def _list_target(self, endpoint: str, name: str) -> str:
        if name in NODE_LISTS_IN_BODY:
            return "workflow_job_template_nodes"
        if name.startswith("notification_templates"):
            return "notification_templates"
        if name in ("galaxy_credentials", "credentials"):
            return "credentials"
        if name == "input_inventories":
            return "inventories"
        return name

    def associate(self, endpoint: str, obj: dict, name: str, data: dict) -> None:
        target = self._list_target(endpoint, name)
        pk = data.get("id")
        if not isinstance(pk, int) or self.store.get(target, pk) is None:
            raise ApiError(
                400, {"msg": f"Related object {pk} not found."} if pk else {"id": ["This field is required."]}
            )
        ids = self.store.links.setdefault((endpoint, obj["id"], name), [])
        if data.get("disassociate"):
            if pk in ids:
                ids.remove(pk)
        elif pk not in ids:
            ids.append(pk)

    # --- surveys (awx/api/views/__init__.py 24.6.1, JobTemplateSurveySpec)

    def survey_get(self, endpoint: str, obj: dict) -> dict:
        return rules.display_survey_spec(self.store.survey_specs.get((endpoint, obj["id"]), {}))

    def survey_post(self, endpoint: str, obj: dict, spec: Any) -> None:
        old = self.store.survey_specs.get((endpoint, obj["id"]), {})
        errors = rules.survey_spec_errors(spec, old)
        if errors:
            raise ApiError(400, {"error": errors[0]})
        self.store.survey_specs[(endpoint, obj["id"])] = rules.normalize_survey_spec(spec, old)

    def survey_delete(self, endpoint: str, obj: dict) -> None:
        self.store.survey_specs.pop((endpoint, obj["id"]), None)


# --- per-kind validation on save, as AWX's serializers do it (awx/api/serializers.py 24.6.1)


def _credential_type_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    errors = rules.credential_type_errors(merged.get("inputs") or {}, merged.get("injectors") or {})
    if not errors and merged.get("kind") not in ("cloud", "net"):
        errors = {"kind": ["Must be 'cloud' or 'net', not %s" % merged.get("kind")]}
    return errors


def _credential_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    if merged.get("credential_type") is None:
        return {"credential_type": ["This field is required."]}
    ctype = api.store.get("credential_types", merged["credential_type"])
    known = {f["id"] for f in ctype["inputs"].get("fields", [])}
    inputs = values.get("inputs")
    if inputs is not None:
        unknown = sorted(set(inputs) - known)
        if unknown:
            return {
                "inputs": [
                    "Additional properties are not allowed ({} was unexpected)".format(
                        ", ".join(repr(u) for u in unknown)
                    )
                ]
            }
        if instance:
            # $encrypted$ sent back means "keep the stored secret" (awx/main/models/credential Credential.save).
            values["inputs"] = {
                k: instance["inputs"].get(k, v) if v == rules.ENCRYPTED else v for k, v in inputs.items()
            }
    return {}


def _job_template_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    # JobTemplateSerializer.validate, then JobOptionsSerializer.validate (awx/api/serializers.py 24.6.1).
    project = api.store.get("projects", merged.get("project"))
    if merged.get("host_config_key") and merged.get("inventory") is None:
        return {"host_config_key": ["Cannot enable provisioning callback without an inventory set."]}
    if project is None:
        return {"project": ["Job Templates must have a project assigned."]}
    if merged.get("inventory") is None and not merged.get("ask_inventory_on_launch"):
        return {"inventory": ["You must either set a default value or ask to prompt on launch."]}
    playbook = merged.get("playbook") or ""
    checks_playbook = not project["scm_type"] or not project["allow_override"]
    if playbook and checks_playbook and playbook not in api.playbooks(project):
        return {"playbook": ["Playbook not found for project."]}
    if not playbook:
        return {"playbook": ["Must select playbook for project."]}
    if merged.get("scm_branch") and not project["allow_override"]:
        return {"scm_branch": ["Project does not allow overriding branch."]}
    if merged.get("ask_scm_branch_on_launch") and not project["allow_override"]:
        return {"ask_scm_branch_on_launch": ["Project does not allow overriding branch."]}
    if merged.get("job_type") not in ("run", "check"):
        return {"job_type": ['"{}" is not a valid choice.'.format(merged.get("job_type"))]}
    return {}


def _inventory_source_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    if merged.get("inventory") is None:
        return {"inventory": ["This field is required."]}
    if merged.get("source") == "scm" and merged.get("source_project") is None:
        return {"source_project": ["Project required for scm type sources."]}
    return {}


def _node_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    if merged.get("workflow_job_template") is None:
        return {"workflow_job_template": ["This field is required."]}
    return {}


def _named_checks(api: Api, merged: dict, values: dict, instance: dict | None) -> dict:
    return {} if merged.get("name") else {"name": ["This field may not be blank."]}


VALIDATORS: dict[str, Callable] = {
    "organizations": _named_checks,
    "projects": _named_checks,
    "inventories": _named_checks,
    "execution_environments": _named_checks,
    "workflow_job_templates": _named_checks,
    "credential_types": _credential_type_checks,
    "credentials": _credential_checks,
    "job_templates": _job_template_checks,
    "inventory_sources": _inventory_source_checks,
    "workflow_job_template_nodes": _node_checks,
}


# --- HTTP routing


def _json(status: int, body: Any) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError as e:
        raise ApiError(400, {"detail": f"JSON parse error - {e}"}) from e


def make_app(api: Api) -> web.Application:
    @web.middleware
    async def awx_headers(request: web.Request, handler):
        response = await handler(request)
        # controller_api reads these to compare the collection and server versions.
        response.headers["X-API-Product-Name"] = "AWX"
        response.headers["X-API-Product-Version"] = AWX_VERSION
        return response

    async def dispatch(request: web.Request) -> web.Response:
        data = await _body(request) if request.method in ("POST", "PATCH", "PUT") else None
        try:
            with api.store.lock:
                status, body = route(api, request, data)
        except ApiError as e:
            status, body = e.status, e.body
        return _json(status, body)

    app = web.Application(middlewares=[awx_headers])
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def route(api: Api, request: web.Request, data: Any) -> tuple[int, Any]:
    path = request.path
    if not path.startswith("/api/"):
        raise not_found()
    rest = path[len("/api/") :]
    if request.method == "GET" and api.fixed(rest) is not None:
        return 200, api.fixed(rest)
    if rest == "v2/tokens/" and request.method == "POST":
        if not api.authenticated(request):
            raise ApiError(401, {"detail": "Invalid username/password."})
        return 201, api.create_token()
    if not api.authenticated(request):
        raise ApiError(401, {"detail": "Authentication credentials were not provided."})
    parts = [unquote(p) for p in rest.split("/") if p][1:] if rest.startswith("v2/") else None
    if not parts:
        raise not_found()
    if parts[0] == "tokens" and len(parts) == 2 and request.method == "DELETE":
        api.delete_token(int(parts[1]))
        return 204, None
    if len(parts) == 1:
        return collection_route(api, request, parts[0], data)
    obj = api.find(parts[0], parts[1])
    if len(parts) == 2:
        return detail_route(api, request, parts[0], obj, data)
    if len(parts) == 3:
        return sub_route(api, request, (parts[0], obj, parts[2]), data)
    raise not_found()


def collection_route(api: Api, request: web.Request, endpoint: str, data: Any) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, api.list_objects(endpoint, dict(request.query))
    if request.method == "POST" and endpoint in KINDS:
        return 201, api.represent(endpoint, api.create(endpoint, data or {}))
    if endpoint not in KINDS and endpoint != "unified_job_templates":
        raise not_found()
    raise ApiError(405, {"detail": f'Method "{request.method}" not allowed.'})


def detail_route(api: Api, request: web.Request, endpoint: str, obj: dict, data: Any) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, api.represent(endpoint, obj)
    if request.method in ("PATCH", "PUT"):
        return 200, api.represent(endpoint, api.update(endpoint, obj, data or {}))
    if request.method == "DELETE":
        api.delete(endpoint, obj)
        return DELETE_STATUS.get(endpoint, 204), None
    raise ApiError(405, {"detail": f'Method "{request.method}" not allowed.'})


def sub_route(api: Api, request: web.Request, target: tuple, data: Any) -> tuple[int, Any]:
    endpoint, obj, name = target
    method = request.method
    if name == "survey_spec" and endpoint in ("job_templates", "workflow_job_templates"):
        return survey_route(api, method, (endpoint, obj), data)
    if name == "update" and endpoint in ("projects", "inventory_sources"):
        return update_route(api, method, endpoint, obj)
    if name == "playbooks" and endpoint == "projects" and method == "GET":
        return 200, api.playbooks(obj)
    if name == "workflow_nodes" and endpoint == "workflow_job_templates" and method == "GET":
        return 200, api.list_objects("workflow_job_template_nodes", {"workflow_job_template": str(obj["id"])})
    if name not in KINDS[endpoint].lists:
        raise not_found()
    if method == "GET":
        return 200, api.related_list(endpoint, obj, name)
    if method == "POST":
        api.associate(endpoint, obj, name, data or {})
        return 204, None
    raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})


def survey_route(api: Api, method: str, target: tuple, data: Any) -> tuple[int, Any]:
    endpoint, obj = target
    if method == "GET":
        return 200, api.survey_get(endpoint, obj)
    if method == "POST":
        api.survey_post(endpoint, obj, data)
        return 200, None
    if method == "DELETE":
        api.survey_delete(endpoint, obj)
        return 200, None
    raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})


def update_route(api: Api, method: str, endpoint: str, obj: dict) -> tuple[int, Any]:
    if method == "GET":
        return 200, {"can_update": True}
    if method != "POST":
        raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
    if endpoint == "projects":
        update = api.run_project_update(obj)
        return 202, {**api.represent("project_updates", update), "project_update": update["id"]}
    stamp = _now()
    update = api.store.create("inventory_updates", {"name": obj["name"], "inventory_source": obj["id"]})
    update.update(failed=False, started=stamp, finished=stamp, elapsed=0.0, event_processing_finished=True)
    obj.update(status="successful", last_updated=stamp, last_job_run=stamp)
    return 202, {**api.represent("inventory_updates", update), "inventory_update": update["id"]}


# --- starting and stopping


class Handle:
    """A running double: url, username, password; objects(kind) and reset() for tests; stop() to end it."""

    def __init__(self, api: Api, url: str, stopper: Callable[[], None]):
        self.api = api
        self.url = url
        self.username = api.username
        self.password = api.password
        self._stop = stopper

    @property
    def project_dirs(self) -> dict[str, str]:
        """The scm_url/name -> local directory map; tests may add entries while it runs."""
        return self.api.store.project_dirs

    def objects(self, kind: str) -> list[dict]:
        """The stored objects of an endpoint (e.g. 'job_templates'), as the API shows them."""
        with self.api.store.lock:
            return [
                self.api.represent(kind, o)
                for o in sorted(self.api.store.objects[kind].values(), key=lambda o: o["id"])
            ]

    def survey_spec(self, kind: str, name: str) -> dict:
        """The stored survey spec (passwords in clear) of the job or workflow template with this name."""
        with self.api.store.lock:
            obj = next(o for o in self.api.store.objects[kind].values() if o["name"] == name)
            return copy.deepcopy(self.api.store.survey_specs.get((kind, obj["id"]), {}))

    def reset(self) -> None:
        """Forget every object (the Default organization comes back); tokens go too."""
        with self.api.store.lock:
            self.api.store.reset()

    def stop(self) -> None:
        self._stop()


def start(
    project_dirs: dict[str, str] | None = None, port: int = 0, username: str = "admin", password: str | None = None
) -> Handle:
    """Start the double on 127.0.0.1 (a free port unless given) in a background thread; returns its Handle."""
    api = Api(Store(project_dirs), username, password or secrets.token_urlsafe(12))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def serve() -> None:
        runner = web.AppRunner(make_app(api), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="awx-double", daemon=True)
    thread.start()
    ready.wait(30)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)

    return Handle(api, "http://127.0.0.1:{}".format(state["port"]), stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the AWX API v2 double in the foreground.")
    parser.add_argument("--port", type=int, default=8043)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="password")
    parser.add_argument("--project-dir", action="append", default=[], metavar="SCM_URL_OR_NAME=DIR")
    args = parser.parse_args()
    dirs = dict(item.split("=", 1) for item in args.project_dir)
    handle = start(
        {k: os.path.abspath(v) for k, v in dirs.items()}, port=args.port, username=args.username, password=args.password
    )
    print(f"AWX double at {handle.url} (user {handle.username} / {handle.password})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        handle.stop()


if __name__ == "__main__":
    main()
