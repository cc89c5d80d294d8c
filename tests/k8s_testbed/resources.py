# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The API server's resource table: built-in kinds from a table, custom kinds registered from CRDs.

What discovery answers, how URLs map to kinds, and which kinds have a status subresource all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple = ()
    subresources: tuple = ()  # "status", "scale", "exec", "log", "proxy", ...
    categories: tuple = ()
    verbs: tuple = ALL_VERBS
    crd: str = ""  # name of the CRD that registered it; "" for built-ins
    schema: dict = field(default=None, hash=False, compare=False)  # openAPIV3Schema for custom kinds
    storage_version: str = ""  # the CRD version objects are stored in; "" when it is this one
    deprecation_warning: str = ""  # a deprecated CRD version's warning, sent with every response for it

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_api_version(self) -> str:
        """The apiVersion objects are stored with (a CRD's storage version; conversion strategy None)."""
        version = self.storage_version or self.version
        return f"{self.group}/{version}" if self.group else version

    @property
    def key(self) -> tuple:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _builtin(group, version, kind, plural, namespaced, short=(), sub=(), categories=()):
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=tuple(short),
        subresources=tuple(sub),
        categories=tuple(categories),
    )


BUILTIN_TYPES = (
    _builtin("", "v1", "Namespace", "namespaces", False, ["ns"], ["status", "finalize"]),
    _builtin("", "v1", "Node", "nodes", False, ["no"], ["status", "proxy"]),
    _builtin("", "v1", "Pod", "pods", True, ["po"], ["status", "exec", "log", "binding", "eviction"], ["all"]),
    _builtin("", "v1", "Service", "services", True, ["svc"], ["status", "proxy"], ["all"]),
    _builtin("", "v1", "Endpoints", "endpoints", True, ["ep"]),
    _builtin("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    _builtin("", "v1", "Secret", "secrets", True),
    _builtin("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
    _builtin("", "v1", "PersistentVolume", "persistentvolumes", False, ["pv"], ["status"]),
    _builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"], ["status"]),
    _builtin("", "v1", "Event", "events", True, ["ev"]),
    _builtin("", "v1", "ResourceQuota", "resourcequotas", True, ["quota"], ["status"]),
    _builtin("", "v1", "LimitRange", "limitranges", True, ["limits"]),
    _builtin("apps", "v1", "Deployment", "deployments", True, ["deploy"], ["status", "scale"], ["all"]),
    _builtin("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], ["status", "scale"], ["all"]),
    _builtin("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"], ["status"], ["all"]),
    _builtin("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], ["status", "scale"], ["all"]),
    _builtin("batch", "v1", "Job", "jobs", True, [], ["status"], ["all"]),
    _builtin("batch", "v1", "CronJob", "cronjobs", True, ["cj"], ["status"], ["all"]),
    _builtin("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ["sc"]),
    _builtin("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _builtin("networking.k8s.io", "v1", "Ingress", "ingresses", True, ["ing"], ["status"]),
    _builtin("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _builtin("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ["netpol"]),
    _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ["crd", "crds"],
        ["status"],
    ),
    _builtin("coordination.k8s.io", "v1", "Lease", "leases", True),
    _builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"], ["status"]),
    _builtin("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ["pc"]),
    _builtin("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
)

# Subresources that are not reads/writes of the object itself: their discovery entries name other kinds.
_SUBRESOURCE_DISCOVERY = {
    "status": (None, ("get", "patch", "update")),
    "scale": ("Scale", ("get", "patch", "update")),
    "exec": ("PodExecOptions", ("create", "get")),
    "log": (None, ("get",)),
    "binding": ("Binding", ("create",)),
    "eviction": ("Eviction", ("create",)),
    "proxy": (None, ("create", "delete", "get", "patch", "update")),
    "finalize": (None, ("update",)),
}
_PROXY_KINDS = {"Service": "ServiceProxyOptions", "Node": "NodeProxyOptions"}


class UnknownResource(KeyError):
    pass


class ResourceRegistry:
    """Every kind the server serves, looked up by group/version/plural or by apiVersion/kind."""

    def __init__(self):
        self._types = {}
        for resource_type in BUILTIN_TYPES:
            self.add(resource_type)

    def add(self, resource_type: ResourceType) -> None:
        self._types[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type

    def remove_crd(self, crd_name: str) -> list:
        removed = [t for t in self._types.values() if t.crd == crd_name]
        for resource_type in removed:
            del self._types[(resource_type.group, resource_type.version, resource_type.plural)]
        return removed

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        try:
            return self._types[(group, version, plural)]
        except KeyError:
            raise UnknownResource(f"{group}/{version}/{plural}") from None

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, dummy, version = api_version.rpartition("/")
        for resource_type in self._types.values():
            if resource_type.group == group and resource_type.version == version and resource_type.kind == kind:
                return resource_type
        return None

    def for_group_plural(self, group: str, plural: str) -> list:
        return [t for t in self._types.values() if t.group == group and t.plural == plural]

    def group_versions(self) -> dict:
        """{group: [versions]} for every group but the core one, in registration order."""
        groups = {}
        for resource_type in self._types.values():
            if resource_type.group:
                versions = groups.setdefault(resource_type.group, [])
                if resource_type.version not in versions:
                    versions.append(resource_type.version)
        return groups

    def resources_in(self, group: str, version: str) -> list:
        return [t for t in self._types.values() if t.group == group and t.version == version]

    def discovery_resources(self, group: str, version: str) -> list:
        """The `resources` of an APIResourceList, subresources included, as the real server lists them."""
        entries = []
        for resource_type in self.resources_in(group, version):
            entry = {
                "name": resource_type.plural,
                "singularName": resource_type.singular,
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": list(resource_type.verbs),
            }
            if resource_type.short_names:
                entry["shortNames"] = list(resource_type.short_names)
            if resource_type.categories:
                entry["categories"] = list(resource_type.categories)
            entries.append(entry)
            for subresource in resource_type.subresources:
                sub_kind, verbs = _SUBRESOURCE_DISCOVERY.get(subresource, (None, ("get",)))
                if subresource == "proxy":
                    sub_kind = _PROXY_KINDS.get(resource_type.kind)
                entry = {
                    "name": f"{resource_type.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": resource_type.namespaced,
                    "kind": sub_kind or resource_type.kind,
                    "verbs": list(verbs),
                }
                if sub_kind == "Scale":
                    entry.update(group="autoscaling", version="v1")
                entries.append(entry)
        return entries


def _deprecation_warning(version: dict, group: str, kind: str) -> str:
    """What the API server warns about a deprecated CRD version: its deprecationWarning, or the default text."""
    if not version.get("deprecated"):
        return ""
    return version.get("deprecationWarning") or f"{group}/{version.get('name', '')} {kind} is deprecated"


def types_from_crd(crd: dict) -> list:
    """The ResourceTypes a CustomResourceDefinition serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    stored = [v.get("name", "") for v in spec.get("versions") or [] if v.get("storage")]
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = tuple(sorted((version.get("subresources") or {}).keys()))
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
        result.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version.get("name", ""),
                kind=names.get("kind", ""),
                plural=names.get("plural", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names.get("kind", "").lower(),
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subresources,
                categories=tuple(names.get("categories") or ()),
                crd=(crd.get("metadata") or {}).get("name", ""),
                schema=schema,
                storage_version=stored[0] if stored else "",
                deprecation_warning=_deprecation_warning(version, spec.get("group", ""), names.get("kind", "")),
            )
        )
    return result
