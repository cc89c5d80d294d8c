"""Pod Security admission, as the API server's built-in PodSecurity plugin enforces it on pods.

A pod created in a namespace labelled ``pod-security.kubernetes.io/enforce: baseline`` (or ``restricted``) is checked
against that level of the Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
Kubernetes v1.33, the version the test bed reports) and refused with 403 Forbidden naming every violation, in the
form the real plugin uses: ``pods "x" is forbidden: violates PodSecurity "baseline:latest": ...``. ``privileged``, no
label or an unknown level admit everything (an unknown level is refused when the label is written, see
``namespace_label_errors``). Only pods are enforced, as in a real cluster: a Deployment or Job whose pods would be
refused is stored, and its controller's pod creation fails.

The checks are those that matter for the collection's pods: host namespaces, privileged containers, capabilities,
hostPath volumes, host ports, seccomp, AppArmor, SELinux options, /proc mount, sysctls (baseline); volume types,
privilege escalation, running as non-root, seccomp and capabilities (restricted). Windows host processes and the
pod-level user namespace relaxations are not modelled. Only the enforce label is read (``warn``/``audit`` change no
outcome).
"""

from __future__ import annotations

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")

# The capabilities baseline lets a container add (Pod Security Standards, "Capabilities").
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# The sysctls baseline allows ("Sysctls").
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# The volume types restricted allows ("Volume Types").
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def namespace_level(namespace: dict | None) -> str:
    """The level a namespace enforces: its enforce label, ``privileged`` when unlabelled or unknown."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    level = labels.get(ENFORCE_LABEL, "privileged")
    return level if level in LEVELS else "privileged"


def namespace_label_errors(namespace: dict) -> list:
    """``[(field, value, message)]`` for pod-security labels the API server refuses on a Namespace."""
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    errors = []
    for mode in ("enforce", "audit", "warn"):
        key = f"pod-security.kubernetes.io/{mode}"
        if key in labels and labels[key] not in LEVELS:
            field = f"metadata.labels[{key}]"
            errors.append((field, labels[key], "must be one of privileged, baseline, restricted"))
    return errors


def _containers(spec: dict):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _names(containers) -> str:
    names = [f'"{c.get("name", "")}"' for c in containers]
    return ("container " if len(names) == 1 else "containers ") + ", ".join(names)


def _baseline(spec: dict) -> list:
    pod_context = spec.get("securityContext") or {}
    containers = list(_containers(spec))
    found = []
    host = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    if host:
        found.append(f"host namespaces ({', '.join(host)})")
    privileged = [c for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        found.append(f"privileged ({_names(privileged)} must not set securityContext.privileged=true)")
    added = {}
    for container in containers:
        extra = [
            str(cap)
            for cap in ((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
            if str(cap) not in BASELINE_CAPABILITIES
        ]
        if extra:
            added[container.get("name", "")] = extra
    if added:
        parts = [f'"{name}"' for name in added]
        caps = sorted({f'"{cap}"' for extra in added.values() for cap in extra})
        found.append(
            f"non-default capabilities ({'container' if len(parts) == 1 else 'containers'} {', '.join(parts)} "
            f"must not include {', '.join(caps)} in securityContext.capabilities.add)"
        )
    host_paths = [v.get("name", "") for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_paths:
        found.append(f"hostPath volumes ({'volume' if len(host_paths) == 1 else 'volumes'} {', '.join(host_paths)})")
    ports = sorted(
        {
            str(port["hostPort"])
            for c in containers
            for port in c.get("ports") or []
            if isinstance(port, dict) and port.get("hostPort")
        }
    )
    if ports:
        found.append(f"hostPort ({'port' if len(ports) == 1 else 'ports'} {', '.join(ports)})")
    unconfined = []
    if (pod_context.get("seccompProfile") or {}).get("type") == "Unconfined":
        unconfined.append("pod")
    unconfined += [
        f'container "{c.get("name", "")}"'
        for c in containers
        if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "Unconfined"
    ]
    if unconfined:
        found.append(
            f"seccompProfile ({' and '.join(unconfined)} must not set securityContext.seccompProfile.type "
            f'to "Unconfined")'
        )
    apparmor = [
        c.get("name", "")
        for c in containers
        if ((c.get("securityContext") or {}).get("appArmorProfile") or {}).get("type") == "Unconfined"
    ]
    if (pod_context.get("appArmorProfile") or {}).get("type") == "Unconfined" or apparmor:
        found.append('forbidden AppArmor profile ("Unconfined")')
    selinux = [pod_context.get("seLinuxOptions") or {}]
    selinux += [(c.get("securityContext") or {}).get("seLinuxOptions") or {} for c in containers]
    if any(o.get("type", "") not in _SELINUX_TYPES or o.get("user") or o.get("role") for o in selinux):
        found.append("seLinuxOptions (forbidden type, user or role)")
    unmasked = [c for c in containers if (c.get("securityContext") or {}).get("procMount", "Default") != "Default"]
    if unmasked:
        found.append(f'procMount ({_names(unmasked)} must not set securityContext.procMount to "Unmasked")')
    sysctls = [s.get("name", "") for s in pod_context.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if sysctls:
        found.append(f"forbidden sysctls ({', '.join(sysctls)})")
    return found


def _restricted(spec: dict) -> list:
    pod_context = spec.get("securityContext") or {}
    containers = list(_containers(spec))
    found = []
    volumes = [
        f'"{v.get("name", "")}"'
        for v in spec.get("volumes") or []
        if not any(key in RESTRICTED_VOLUMES for key in v if key != "name") and "hostPath" not in v
    ]
    if volumes:
        found.append(
            f"restricted volume types ({'volume' if len(volumes) == 1 else 'volumes'} {', '.join(volumes)} "
            "use a restricted volume type)"
        )
    escalating = [
        c for c in containers if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        found.append(
            f"allowPrivilegeEscalation != false ({_names(escalating)} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    pod_non_root = pod_context.get("runAsNonRoot") is True
    root_allowed = [
        c
        for c in containers
        if (c.get("securityContext") or {}).get("runAsNonRoot") is False
        or (not pod_non_root and (c.get("securityContext") or {}).get("runAsNonRoot") is not True)
    ]
    if pod_context.get("runAsNonRoot") is False or root_allowed:
        found.append(
            f"runAsNonRoot != true (pod or {_names(root_allowed or containers)} must set "
            "securityContext.runAsNonRoot=true)"
        )
    root_uid = [c for c in containers if (c.get("securityContext") or {}).get("runAsUser") == 0]
    if pod_context.get("runAsUser") == 0 or root_uid:
        found.append("runAsUser=0 (pod and containers must not set runAsUser=0)")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    unset = [
        c
        for c in containers
        if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type", pod_seccomp)
        not in ("RuntimeDefault", "Localhost")
    ]
    if unset:
        found.append(
            f"seccompProfile (pod or {_names(unset)} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost")'
        )
    not_dropped = []
    added = []
    for container in containers:
        capabilities = (container.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in [str(cap) for cap in capabilities.get("drop") or []]:
            not_dropped.append(container)
        if any(str(cap) != "NET_BIND_SERVICE" for cap in capabilities.get("add") or []):
            added.append(container)
    if not_dropped or added:
        parts = []
        if not_dropped:
            parts.append(f'{_names(not_dropped)} must set securityContext.capabilities.drop=["ALL"]')
        if added:
            parts.append(
                f'{_names(added)} must not include capabilities other than "NET_BIND_SERVICE" in '
                "securityContext.capabilities.add"
            )
        found.append(f"unrestricted capabilities ({'; '.join(parts)})")
    return found


def violations(pod: dict, level: str) -> list:
    """What ``pod`` breaks of ``level`` (privileged, baseline or restricted), in the real plugin's words."""
    if level not in LEVELS or level == "privileged":
        return []
    spec = pod.get("spec") or {}
    found = _baseline(spec)
    if level == "restricted":
        found += _restricted(spec)
    return found


def admission_error(pod: dict, namespace: dict | None) -> str | None:
    """The Forbidden message for a pod its namespace's enforced level refuses, else None."""
    level = namespace_level(namespace)
    found = violations(pod, level)
    if not found:
        return None
    name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName") or ""
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": {", ".join(found)}'
