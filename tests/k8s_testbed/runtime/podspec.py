# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the kubelet works out from a pod before any container starts: a PodPlan, pure data.

Built in the controllers' thread from the pod and the objects it refers to (Secrets, ConfigMaps, claims and
volumes, the local images), so the pod's worker thread never reads the object store. A pod that cannot start yet
raises PlanError with the kubelet's reason (CreateContainerConfigError, FailedMount) and message.

The rules followed are the kubelet's (and the CRI runtime's) as documented for Kubernetes 1.33:
- command/args against the image's Entrypoint/Cmd: ``command`` replaces the Entrypoint and drops the Cmd; ``args``
  alone replace the Cmd; ``$(VAR)`` in command and args expands from the container's environment;
- the environment: the image's Env, then the container's (envFrom, then env; ``pod_env``), PATH defaulted;
- the user: the container's securityContext over the pod's over the image's User; runAsNonRoot checked;
- capabilities: containerd's default set, minus drop, plus add (all of them when privileged);
- volumes: emptyDir (tmpfs for medium Memory, sized by sizeLimit), persistentVolumeClaim (a host directory per
  PersistentVolume), hostPath (a directory per node under the test bed's state dir, never this machine's own
  path), configMap, secret, downwardAPI and projected volumes as files, honouring items, mode and defaultMode;
  configMap, secret, downwardAPI and projected volumes are mounted read-only, as the kubelet does.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from .. import pod_env
from ..quantity import parse_quantity

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# containerd's default capabilities (oci.defaultUnixCaps), the set Kubernetes pods start from.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
FILE_VOLUME_KINDS = ("configMap", "secret", "downwardAPI", "projected")


class PlanError(ValueError):
    """The pod cannot start yet; ``reason`` is what the kubelet reports (an event, a waiting container)."""

    def __init__(self, reason: str, message: str, container: str = ""):
        super().__init__(message)
        self.reason = reason
        self.container = container


@dataclass(frozen=True)
class Probe:
    kind: str  # exec | httpGet | tcpSocket
    command: tuple = ()
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: tuple = ()
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None


@dataclass(frozen=True)
class MountPlan:
    volume: str
    path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class VolumePlan:
    name: str
    kind: str  # emptyDir | memory | directory | files
    size_bytes: int | None = None
    host_dir: str = ""  # directory: where it lives on this machine
    files: tuple = ()  # files: ((relative path, bytes, mode), ...)
    read_only: bool = False


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: object  # images.store.LocalImage
    argv: tuple
    env: tuple  # ("NAME=value", ...)
    cwd: str
    uid: int
    gid: int
    extra_gids: tuple = ()
    mounts: tuple = ()
    memory_limit: int | None = None
    ports: dict = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    termination_message_path: str = "/dev/termination-log"
    fallback_to_logs: bool = False
    capabilities: tuple = DEFAULT_CAPABILITIES
    no_new_privileges: bool = False
    read_only_root: bool = False
    init: bool = False


@dataclass(frozen=True)
class PodPlan:
    uid: str
    namespace: str
    name: str
    node: str
    ip: str
    hostname: str
    restart_policy: str
    grace_seconds: float
    init_containers: tuple
    containers: tuple
    volumes: tuple
    hosts: str
    resolv: str
    fs_group: int | None = None

    def all_containers(self) -> tuple:
        return self.init_containers + self.containers


@dataclass(frozen=True)
class PlanContext:
    """What a plan is built against: stored objects (``lookup(kind, namespace, name)``), images, host places."""

    lookup: object
    images: object  # images.store.ImageStore
    volume_root: str  # PersistentVolumes' directories
    host_path_root: str  # hostPath volumes: <root>/<node>/<path>
    hosts: str = ""
    resolv: str = ""


def images_present(pod: dict, images) -> bool:
    """Whether every container's image (init containers too) is in the local store: only such pods run."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    return bool(containers) and all(images.resolve(c.get("image") or "") is not None for c in containers)


def build_pod_plan(pod: dict, ip: str, context: PlanContext) -> PodPlan:
    metadata, spec = pod["metadata"], pod["spec"]
    volumes = tuple(_volume_plan(volume, pod, context) for volume in spec.get("volumes") or [])
    containers = tuple(_container_plan(c, pod, context, False) for c in spec.get("containers") or [])
    init = tuple(_container_plan(c, pod, context, True) for c in spec.get("initContainers") or [])
    return PodPlan(
        uid=metadata["uid"],
        namespace=metadata["namespace"],
        name=metadata["name"],
        node=spec.get("nodeName") or "",
        ip=ip,
        hostname=str(spec.get("hostname") or metadata["name"])[:63],
        restart_policy=spec.get("restartPolicy") or "Always",
        grace_seconds=float(
            metadata.get("deletionGracePeriodSeconds") or spec.get("terminationGracePeriodSeconds") or 30
        ),
        init_containers=init,
        containers=containers,
        volumes=volumes,
        hosts=context.hosts,
        resolv=context.resolv,
        fs_group=(spec.get("securityContext") or {}).get("fsGroup"),
    )


# ---- containers ---------------------------------------------------------------------------------------------


def _container_plan(container: dict, pod: dict, context: PlanContext, init: bool) -> ContainerPlan:
    name = container["name"]
    image = context.images.resolve(container.get("image") or "")
    try:
        env = pod_env.container_environment(pod, container, context.lookup)
    except pod_env.EnvResolutionError as error:
        raise PlanError("CreateContainerConfigError", str(error), name) from None
    environment = _environment(image.config, env)
    uid, gid, extra = _user(container, pod, image, name)
    security = _security(container, pod)
    return ContainerPlan(
        name=name,
        image=image,
        argv=tuple(container_argv(container, image.config, environment)),
        env=tuple(f"{key}={value}" for key, value in environment.items()),
        cwd=container.get("workingDir") or image.config.get("WorkingDir") or "/",
        uid=uid,
        gid=gid,
        extra_gids=extra,
        mounts=tuple(_mounts(container, pod)),
        memory_limit=_memory_limit(container),
        ports={p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")},
        readiness=_probe(container, "readinessProbe"),
        liveness=_probe(container, "livenessProbe"),
        startup=_probe(container, "startupProbe"),
        termination_message_path=container.get("terminationMessagePath") or "/dev/termination-log",
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        init=init,
        **security,
    )


def container_argv(container: dict, image_config: dict, env: dict) -> list:
    """The process's argv: Kubernetes' command/args over the image's Entrypoint/Cmd, ``$(VAR)`` expanded."""
    entrypoint = list(image_config.get("Entrypoint") or [])
    cmd = list(image_config.get("Cmd") or [])
    command = [pod_env.expand_vars(str(part), env) for part in container.get("command") or []]
    args = [pod_env.expand_vars(str(part), env) for part in container.get("args") or []]
    if command:
        return command + args
    if args:
        return entrypoint + args
    return entrypoint + cmd


def _environment(image_config: dict, container_env: dict) -> dict:
    environment = dict(entry.split("=", 1) for entry in image_config.get("Env") or [] if "=" in entry)
    environment.update(container_env)
    environment.setdefault("PATH", DEFAULT_PATH)
    return environment


def _memory_limit(container: dict) -> int | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return int(parse_quantity(limit)) if limit else None


def _probe(container: dict, key: str) -> Probe | None:
    raw = container.get(key)
    if not raw:
        return None
    timing = {
        "initial_delay": float(raw.get("initialDelaySeconds") or 0),
        "period": float(raw.get("periodSeconds") or 10),
        "timeout": float(raw.get("timeoutSeconds") or 1),
        "success_threshold": int(raw.get("successThreshold") or 1),
        "failure_threshold": int(raw.get("failureThreshold") or 3),
        "termination_grace": raw.get("terminationGracePeriodSeconds"),
    }
    if raw.get("exec"):
        return Probe("exec", command=tuple(raw["exec"].get("command") or ()), **timing)
    for kind in ("httpGet", "tcpSocket"):
        if raw.get(kind):
            handler = raw[kind]
            return Probe(
                kind,
                port=_port_number(handler.get("port"), container),
                path=handler.get("path") or "/",
                scheme=handler.get("scheme") or "HTTP",
                host=handler.get("host") or "",
                headers=tuple((h["name"], h["value"]) for h in handler.get("httpHeaders") or []),
                **timing,
            )
    raise PlanError("CreateContainerConfigError", f"{key} of container {container['name']}: no supported handler")


def _port_number(port, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    raise PlanError("CreateContainerConfigError", f"container {container['name']} has no port named {port!r}")


def _security(container: dict, pod: dict) -> dict:
    context = container.get("securityContext") or {}
    capabilities = context.get("capabilities") or {}
    if context.get("privileged"):
        caps = _all_capabilities()
    else:
        dropped = {_cap(c) for c in capabilities.get("drop") or []}
        caps = [c for c in DEFAULT_CAPABILITIES if "CAP_ALL" not in dropped and c not in dropped]
        caps += [_cap(c) for c in capabilities.get("add") or [] if _cap(c) not in caps]
    return {
        "capabilities": tuple(caps),
        "no_new_privileges": context.get("allowPrivilegeEscalation") is False,
        "read_only_root": bool(context.get("readOnlyRootFilesystem")),
    }


def _cap(name: str) -> str:
    name = str(name).upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def _all_capabilities() -> list:
    with open("/proc/sys/kernel/cap_last_cap", encoding="utf-8") as handle:
        last = int(handle.read().strip())
    names = _CAPABILITY_NAMES[: last + 1]
    return [name for name in names if name]


_CAPABILITY_NAMES = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID CAP_SETPCAP "
    "CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER "
    "CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE "
    "CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL "
    "CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ "
    "CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
).split()


# ---- the user -----------------------------------------------------------------------------------------------


def _user(container: dict, pod: dict, image, name: str) -> tuple:
    """(uid, gid, supplementary gids): the securityContexts over the image's User; runAsNonRoot enforced."""
    pod_context = (pod.get("spec") or {}).get("securityContext") or {}
    context = dict(pod_context, **(container.get("securityContext") or {}))
    image_user = str(image.config.get("User") or "")
    uid = context.get("runAsUser")
    gid = context.get("runAsGroup")
    if uid is None:
        uid, image_gid = _image_user(image, image_user, context.get("runAsNonRoot"), name)
        gid = image_gid if gid is None else gid
    if context.get("runAsNonRoot") and int(uid) == 0:
        who = f'(pod: "{pod["metadata"]["name"]}_{pod["metadata"]["namespace"]}({pod["metadata"]["uid"]})", '
        raise PlanError(
            "CreateContainerConfigError",
            f"container has runAsNonRoot and image will run as root {who}container: {name})",
            name,
        )
    extra = [int(g) for g in pod_context.get("supplementalGroups") or []]
    if pod_context.get("fsGroup") is not None:
        extra.append(int(pod_context["fsGroup"]))
    return int(uid), int(gid if gid is not None else 0), tuple(extra)


def _image_user(image, user: str, non_root, name: str) -> tuple:
    if not user:
        return 0, None
    who, dummy, group = user.partition(":")
    if who.isdigit():
        return int(who), int(group) if group.isdigit() else None
    if non_root:
        message = f"container has runAsNonRoot and image has non-numeric user ({who}), cannot verify user is non-root"
        raise PlanError("CreateContainerConfigError", message, name)
    entry = _passwd_entry(image, who)
    if entry is None:
        raise PlanError(
            "CreateContainerConfigError", f"unable to find user {who}: no matching entries in passwd file", name
        )
    return entry


def _passwd_entry(image, user: str):
    for layer in reversed(image.layer_dirs):
        path = os.path.join(layer, "etc", "passwd")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    fields = line.split(":")
                    if len(fields) > 3 and fields[0] == user:
                        return int(fields[2]), int(fields[3])
            return None
    return None


# ---- volumes ------------------------------------------------------------------------------------------------


def _mounts(container: dict, pod: dict) -> list:
    kinds = {v["name"]: next((k for k in v if k != "name"), "") for v in pod["spec"].get("volumes") or []}
    mounts = []
    for mount in container.get("volumeMounts") or []:
        read_only = bool(mount.get("readOnly")) or kinds.get(mount["name"]) in FILE_VOLUME_KINDS
        mounts.append(MountPlan(mount["name"], mount["mountPath"], mount.get("subPath") or "", read_only))
    return mounts


def _volume_plan(volume: dict, pod: dict, context: PlanContext) -> VolumePlan:
    name = volume["name"]
    if "emptyDir" in volume:
        empty = volume["emptyDir"] or {}
        size = int(parse_quantity(empty["sizeLimit"])) if empty.get("sizeLimit") else None
        return VolumePlan(name, "memory" if empty.get("medium") == "Memory" else "emptyDir", size_bytes=size)
    if "persistentVolumeClaim" in volume:
        return _claim_volume(name, volume["persistentVolumeClaim"], pod, context)
    if "hostPath" in volume:
        node = pod["spec"].get("nodeName") or "node"
        path = os.path.normpath(volume["hostPath"].get("path") or "/").lstrip("/")
        return VolumePlan(name, "directory", host_dir=os.path.join(context.host_path_root, node, path))
    for kind in FILE_VOLUME_KINDS:
        if kind in volume:
            return VolumePlan(
                name, "files", files=tuple(_volume_files(kind, volume[kind], pod, context)), read_only=True
            )
    kinds = ", ".join(k for k in volume if k != "name")
    raise PlanError(
        "FailedMount",
        f'MountVolume.SetUp failed for volume "{name}" : the test bed runtime does not mount {kinds} volumes',
    )


def _claim_volume(name: str, source: dict, pod: dict, context: PlanContext) -> VolumePlan:
    claim_name = source.get("claimName") or ""
    claim = context.lookup("PersistentVolumeClaim", pod["metadata"]["namespace"], claim_name)
    volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
    if not volume_name:
        raise PlanError(
            "FailedMount", f'MountVolume.SetUp failed for volume "{name}" : claim {claim_name} is not bound'
        )
    return VolumePlan(
        name,
        "directory",
        host_dir=os.path.join(context.volume_root, volume_name),
        read_only=bool(source.get("readOnly")),
    )


def _volume_files(kind: str, source: dict, pod: dict, context: PlanContext) -> list:
    """((path, bytes, mode), ...) for a configMap, secret, downwardAPI or projected volume."""
    default_mode = source.get("defaultMode", 0o644)
    if kind == "projected":
        files = []
        for projection in source.get("sources") or []:
            for sub_kind in ("configMap", "secret", "downwardAPI"):
                if sub_kind in projection:
                    files += _source_files(sub_kind, dict(projection[sub_kind], defaultMode=default_mode), pod, context)
        return files
    return _source_files(kind, source, pod, context)


def _source_files(kind: str, source: dict, pod: dict, context: PlanContext) -> list:
    default_mode = source.get("defaultMode", 0o644)
    if kind == "downwardAPI":
        return [
            (item["path"], _downward_value(item, pod), item.get("mode", default_mode))
            for item in source.get("items") or []
        ]
    object_kind = "ConfigMap" if kind == "configMap" else "Secret"
    object_name = source.get("name") if kind == "configMap" else source.get("secretName", source.get("name"))
    stored = context.lookup(object_kind, pod["metadata"]["namespace"], object_name or "")
    if stored is None:
        if source.get("optional"):
            return []
        raise PlanError(
            "FailedMount",
            f'MountVolume.SetUp failed for volume "{object_name}" : {object_kind.lower()} "{object_name}" not found',
        )
    data = _object_bytes(object_kind, stored)
    items = source.get("items")
    if not items:
        return [(key, value, default_mode) for key, value in sorted(data.items())]
    missing = [item["key"] for item in items if item["key"] not in data]
    if missing and not source.get("optional"):
        raise PlanError("FailedMount", f"configmap references non-existent config key: {missing[0]}")
    return [(item["path"], data[item["key"]], item.get("mode", default_mode)) for item in items if item["key"] in data]


def _object_bytes(kind: str, stored: dict) -> dict:
    if kind == "Secret":
        data = {key: base64.b64decode(value or "") for key, value in (stored.get("data") or {}).items()}
        data.update({key: str(value).encode() for key, value in (stored.get("stringData") or {}).items()})
        return data
    data = {key: str(value).encode() for key, value in (stored.get("data") or {}).items()}
    data.update({key: base64.b64decode(value or "") for key, value in (stored.get("binaryData") or {}).items()})
    return data


def _downward_value(item: dict, pod: dict) -> bytes:
    if item.get("fieldRef"):
        return pod_env.field_value(pod, item["fieldRef"].get("fieldPath", "")).encode()
    ref = item.get("resourceFieldRef") or {}
    container = next((c for c in pod["spec"]["containers"] if c["name"] == ref.get("containerName")), {})
    return pod_env.resource_value(pod, container, ref).encode()
