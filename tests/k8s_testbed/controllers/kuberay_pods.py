# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The head and worker pods KubeRay v1.7.0 builds for a RayCluster (the ``kuberay`` controller's pod builder).

Emulates ``ray-operator/controllers/ray/common/pod.go`` at v1.7.0 (``DefaultHeadPodTemplate``,
``DefaultWorkerPodTemplate``, ``BuildPod`` and what they call) with the operator as its Helm chart installs it:
feature gates RayClusterStatusConditions and RayMultiHostIndexing on, RayClusterMTLS and RayClusterHistoryServer
off, no ENABLE_* environment overrides, no operator configuration (default envs, labels, sidecars). Each piece
cites the v1.7.0 file and line it follows. Token auth (``authOptions.mode: token``) is emulated with a Secret's
token; not emulated: Kubernetes token auth (``enableK8sTokenAuth``), the in-tree autoscaler sidecar, batch
schedulers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from ..jsondata import json_copy
from ..quantity import format_quantity, is_binary, parse_quantity, quantity_value
from ..seeding import KUBERAY_VERSION
from .base import labels_of, owner_reference, rand5

# utils/constant.go:105-116: the default ports and their names.
DEFAULT_PORTS = {"client": 10001, "gcs-server": 6379, "dashboard": 8265, "metrics": 8080, "serve": 8000}
DEFAULT_GCS_PORT = "6379"
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_AGENT_PORT = 52365  # utils/constant.go:109 DefaultDashboardAgentListenPort
CLUSTER_DOMAIN = "cluster.local"  # utils/util.go:43 DefaultDomainName (CLUSTER_DOMAIN unset)
LOCAL_HOST = "127.0.0.1"  # utils/constant.go:304
HEAD_GROUP = "headgroup"  # utils/constant.go:352 RayNodeHeadGroupLabelValue
CONTAINER_COMMAND = ["/bin/bash", "-c", "--"]  # utils/util.go:1005 GetContainerCommand, ENABLE_LOGIN_SHELL unset
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"  # pod.go:888
# utils/constant.go:334-344: the health endpoints; 340 the wget probe command.
RAYLET_HEALTH_PATH = "api/local_raylet_healthz"
GCS_HEALTH_PATH = "api/gcs_healthz"
SERVE_HEALTH_PATH = "-/healthz"
NODE_HEALTH_PATH = "/api/healthz"
UNIFIED_HEALTH_CHECK_SINCE = (2, 53, 0)  # pod.go:727 supportsUnifiedHealthCheck
# utils/constant.go:306-322: probe timings (initialDelay, timeout, head timeout, period, success, failure).
LIVENESS = (30, 2, 5, 5, 1, 120)
READINESS = (10, 2, 5, 5, 1, 10)
SERVE_READINESS_FAILURE_THRESHOLD = 1  # utils/constant.go:313
# pod.go:1530: rayStartParams whose "false" is passed on instead of dropping the flag.
EXPLICIT_BOOLEAN_FLAGS = ("log-color", "include-dashboard", "include-log-monitor")
# pod.go:46-49: custom accelerators and the Ray resource each becomes.
CUSTOM_ACCELERATORS = {"aws.amazon.com/neuroncore": "neuron_cores", "google.com/tpu": "TPU"}
_MIG_RESOURCE = re.compile(r"nvidia\.com/mig-\d+g\.\d+gb$")
_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)")


# ---- names and addresses (utils/util.go) ---------------------------------------------------------------------


def head_service_name(cluster: dict) -> str:
    """util.go:316 GenerateHeadServiceName: headGroupSpec.headService's name, else <cluster>-head-svc."""
    head_service = (_spec(cluster).get("headGroupSpec") or {}).get("headService") or {}
    return (head_service.get("metadata") or {}).get("name") or f"{cluster['metadata']['name']}-head-svc"


def fqdn_ray_ip(cluster: dict) -> str:
    """util.go:332 GenerateFQDNServiceName."""
    return f"{head_service_name(cluster)}.{cluster['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}"


def head_port(cluster: dict) -> str:
    """pod.go:54 GetHeadPort: the head's rayStartParams port, else the GCS port."""
    return str(((_spec(cluster).get("headGroupSpec") or {}).get("rayStartParams") or {}).get("port", DEFAULT_GCS_PORT))


def creator_crd_type(cluster: dict) -> str:
    """raycluster_controller.go:1760 getCreatorCRDType: the ray.io/originated-from-crd label, else RayCluster."""
    value = labels_of(cluster).get("ray.io/originated-from-crd", "")
    return value if value in ("RayJob", "RayService") else "RayCluster"


def check_name(value: str) -> str:
    """util.go:221 CheckName: at most 50 characters (the end is kept), no leading digit or punctuation."""
    value = value[len(value) - 50 :] if len(value) > 50 else value
    return "r" + value[1:] if value and not value[0].isalpha() else value


def check_label(value: str) -> str:
    """util.go:251 CheckLabel: at most 63 characters (the end is kept), no leading punctuation."""
    value = value[len(value) - 63 :] if len(value) > 63 else value
    return "r" + value[1:] if value and not value[0].isalnum() else value


def pod_generate_name(prefix: str, node_type: str) -> str:
    """util.go:203 PodName: the prefix cut to 50 characters, then -head- or -worker-."""
    return f"{prefix[:50]}-{node_type}-".lower()


def canonical_quantity(value) -> str:
    """How a resource.Quantity the operator copies is written back: its canonical form ("1024Mi" is "1Gi")."""
    return format_quantity(parse_quantity(value), is_binary(value))


def is_gpu_resource(key: str) -> bool:
    """utils/resources.go:8 IsGPUResourceKey."""
    return key.endswith("gpu") or bool(_MIG_RESOURCE.search(key))


def ray_version_at_least(ray_version: str, minimum: tuple) -> bool:
    """pod.go:721 with k8s.io version.ParseGeneric: two or more numeric components, the rest ignored."""
    match = _VERSION.match(ray_version or "")
    parts = match.group(1).split(".") if match else []
    if len(parts) < 2 or (parts[0].startswith("0") and parts[0] != "0"):
        return False
    numbers = [int(p) for p in parts] + [0] * max(0, len(minimum) - len(parts))
    return tuple(numbers) >= minimum


def cluster_spec_hash(spec: dict) -> str:
    """util.go:645 GenerateHashWithoutReplicasAndWorkersToDelete: base32hex SHA-1 of the spec without what the
    autoscaler or Kueue change. Go marshals the typed struct, so the value differs from the real one; it changes
    exactly when the real one would."""
    muted = json_copy(spec)
    muted.pop("upgradeStrategy", None)
    for group in [muted.get("headGroupSpec") or {}] + list(muted.get("workerGroupSpecs") or []):
        pod_spec = (group.get("template") or {}).get("spec") or {}
        pod_spec.pop("tolerations", None)
        pod_spec.pop("schedulingGates", None)
    for group in muted.get("workerGroupSpecs") or []:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
    digest = hashlib.sha1(json.dumps(muted, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.b32hexencode(digest).decode()


# ---- rayStartParams and the ray start command ---------------------------------------------------------------


def start_params(cluster: dict, node_type: str, group: dict) -> dict:
    """The group's rayStartParams as the pod templates complete them (pod.go:229-238, 664-683)."""
    params = {key: str(value) for key, value in (group.get("rayStartParams") or {}).items()}
    _resources_to_params(params, group.get("resources") or {})
    _labels_to_params(params, group.get("labels") or {})
    if node_type == "worker":  # pod.go:1348-1353
        params.setdefault("address", f"{fqdn_ray_ip(cluster)}:{head_port(cluster)}")
    else:  # pod.go:1355-1360
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", str(DEFAULT_PORTS["metrics"]))  # pod.go:1373
    params["block"] = "true"  # pod.go:1378
    params.setdefault("dashboard-agent-listen-port", str(DEFAULT_AGENT_PORT))  # pod.go:1383
    return params


def _resources_to_params(params: dict, resources: dict) -> None:
    """pod.go:1649 updateRayStartParamsResources: the group's top-level resources override rayStartParams."""
    custom = {}
    for name, value in resources.items():
        try:
            amount = parse_quantity(value)
        except ValueError:
            continue  # pod.go:1659: skipped, as KubeRay logs and skips it
        lowered = name.lower()
        if lowered == "cpu":
            params["num-cpus"] = str(quantity_value(value))
        elif lowered == "memory":
            params["memory"] = str(quantity_value(value))
        elif is_gpu_resource(lowered):
            params["num-gpus"] = str(quantity_value(value))
        else:
            custom[name] = float(amount)
    if custom:
        params["resources"] = f"'{_go_json(custom)}'"


def _labels_to_params(params: dict, labels: dict) -> None:
    """pod.go:1630 updateRayStartParamsLabels: --labels from the group's top-level labels, sorted."""
    if labels:
        params["labels"] = ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def _go_json(mapping: dict) -> str:
    """encoding/json of a map[string]float64: sorted keys, whole numbers without a fraction."""
    parts = [f"{json.dumps(k)}:{int(v) if float(v).is_integer() else v!r}" for k, v in sorted(mapping.items())]
    return "{" + ",".join(parts) + "}"


def ray_start_command(node_type: str, params: dict, resources: dict) -> str:
    """pod.go:1390 generateRayStartCommand: num-cpus, memory, num-gpus and accelerators from the Ray container."""
    params = dict(params)
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "num-cpus" not in params:  # pod.go:1394-1405: the CPU limit, else the request, rounded up
        for source in (limits, requests):
            if parse_quantity(source.get("cpu", 0)):
                params["num-cpus"] = str(quantity_value(source["cpu"]))
                break
    if "memory" not in params and parse_quantity(limits.get("memory", 0)):  # pod.go:1407-1412
        params["memory"] = str(quantity_value(limits["memory"]))
    _accelerators_to_params(params, limits)
    prefix = "ray start --head" if node_type == "head" else "ray start"  # pod.go:1420-1427
    return f"{prefix} {_flags(params)}"


def _accelerators_to_params(params: dict, limits: dict) -> None:
    """pod.go:1432 addWellKnownAcceleratorResources: the first GPU and custom accelerator limits, keys sorted."""
    try:
        resources = json.loads(params["resources"].strip("'\"` ")) if params.get("resources") else {}
    except ValueError:
        return  # pod.go:1437-1440: KubeRay logs the error and adds nothing
    accelerator_done = any(name in resources for name in CUSTOM_ACCELERATORS.values())
    for key in sorted(limits):
        amount = parse_quantity(limits[key])
        if "num-gpus" not in params and is_gpu_resource(key) and amount:
            params["num-gpus"] = str(quantity_value(limits[key]))
        if not accelerator_done and key in CUSTOM_ACCELERATORS and amount:
            if CUSTOM_ACCELERATORS[key] not in resources:
                resources[CUSTOM_ACCELERATORS[key]] = float(amount)
                params["resources"] = f"'{_go_json(resources)}'"
            accelerator_done = True


def _flags(params: dict) -> str:
    """pod.go:1518 convertParamMap: sorted; a true boolean is a bare flag, a false one is dropped."""
    flags = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in EXPLICIT_BOOLEAN_FLAGS:
            flags += f" --{key} " if value.lower() == "true" else ""
        else:
            flags += f" --{key}={value} "
    return flags


# ---- the pod template (DefaultHeadPodTemplate / DefaultWorkerPodTemplate) -------------------------------------


def _spec(cluster: dict) -> dict:
    return cluster.get("spec") or {}


def ft_enabled(cluster: dict) -> bool:
    """util.go:765 IsGCSFaultToleranceEnabled: the ray.io/ft-enabled annotation or gcsFaultToleranceOptions."""
    annotation = str((cluster["metadata"].get("annotations") or {}).get("ray.io/ft-enabled", "")).lower()
    return annotation == "true" or _spec(cluster).get("gcsFaultToleranceOptions") is not None


def pod_labels(cluster: dict, node_type: str, group: dict, replica: tuple | None) -> dict:
    """pod.go:1167 labelPod over the template's labels merged with the group's (pod.go:1689 mergeLabels);
    workers also get RayMultiHostIndexing's replica labels (pod.go:674-682)."""
    name = cluster["metadata"]["name"]
    merged = dict(((group.get("template") or {}).get("metadata") or {}).get("labels") or {})
    merged.update(group.get("labels") or {})
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": name,
        "ray.io/node-type": node_type,
        "ray.io/group": HEAD_GROUP if node_type == "head" else group.get("groupName", ""),
        "ray.io/identifier": check_label(f"{name}-{node_type}"),
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    labels.update({k: v for k, v in merged.items() if k not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster")})
    if node_type == "worker" and replica is not None:
        index, replica_name, host_index = replica
        labels["ray.io/worker-group-replica-index"] = str(index)
        if int(group.get("numOfHosts") or 1) > 1:
            labels["ray.io/worker-group-replica-name"] = replica_name
            labels["ray.io/replica-host-index"] = str(host_index)
    if creator_crd_type(cluster) == "RayService":  # pod.go:839-844: the head joins the serve Service later
        labels["ray.io/serve"] = "false" if node_type == "head" else "true"
    return labels


def pod_annotations(cluster: dict, node_type: str, group: dict) -> dict:
    """The template's annotations, ray.io/overwrite-container-cmd (pod.go:67-75), the head's ray.io/ft-enabled
    (pod.go:85-87) and its upgrade hash and KubeRay version (raycluster_controller.go:1641-1646)."""
    annotations = dict(((group.get("template") or {}).get("metadata") or {}).get("annotations") or {})
    cluster_annotations = cluster["metadata"].get("annotations") or {}
    if str(cluster_annotations.get("ray.io/overwrite-container-cmd", "")).lower() == "true":
        annotations["ray.io/overwrite-container-cmd"] = "true"
    if node_type == "head":
        annotations["ray.io/ft-enabled"] = "true" if ft_enabled(cluster) else "false"
        annotations["ray.io/upgrade-strategy-recreate-hash"] = cluster_spec_hash(_spec(cluster))
        annotations["ray.io/kuberay-version"] = KUBERAY_VERSION
    return annotations


def _add_metrics_port(ray: dict) -> None:
    """pod.go:288-296 and 688-696: a metrics container port unless one is named so."""
    ports = ray.setdefault("ports", [])
    if not any(port.get("name") == "metrics" for port in ports):
        ports.append({"name": "metrics", "containerPort": DEFAULT_PORTS["metrics"]})


def wait_gcs_ready(ray: dict, fqdn: str, port: str) -> dict:
    """pod.go:606-658: the workers' init container that waits for the head's GCS (ENABLE_INIT_CONTAINER_INJECTION
    unset); it gets the Ray container's env and mounts as the template had them."""
    check = f"ray health-check --address {fqdn}:{port}"
    lines = [
        "SECONDS=0",
        "while true; do",
        "\tif (( SECONDS <= 120 )); then",
        f"\t\tif {check} > /dev/null 2>&1; then",
        '\t\t\techo "GCS is ready."',
        "\t\t\tbreak",
        "\t\tfi",
        '\t\techo "$SECONDS seconds elapsed: Waiting for GCS to be ready."',
        "\telse",
        f"\t\tif {check}; then",
        '\t\t\techo "GCS is ready. Any error messages above can be safely ignored."',
        "\t\t\tbreak",
        "\t\tfi",
        '\t\techo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, refer to the '
        'FAQ at https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."',
        "\tfi",
        "\tsleep 5",
        "done",
    ]
    # The Go raw string keeps its source indentation: five tabs a line, four before the closing backtick.
    script = "\n" + "".join(f"\t\t\t\t\t{line}\n" for line in lines) + "\t\t\t\t"
    fixed = {"cpu": "200m", "memory": "256Mi"}
    init = {"name": "wait-gcs-ready", "image": ray.get("image"), "command": list(CONTAINER_COMMAND), "args": [script]}
    for key in ("imagePullPolicy", "securityContext", "env", "volumeMounts"):
        if ray.get(key):
            init[key] = json_copy(ray[key])
    init["resources"] = {"limits": dict(fixed), "requests": dict(fixed)}
    return init


def _ft_worker_env(ray: dict) -> None:
    """pod.go:94-102: with GCS fault tolerance a worker's raylet waits 600 s for a restarted GCS."""
    _env_default(ray.setdefault("env", []), "RAY_gcs_rpc_server_reconnect_timeout_s", "600")


def _gcs_backend(cluster: dict) -> str:
    """util.go:772 GetGcsFaultToleranceBackend: redis unless gcsFaultToleranceOptions.backend says otherwise."""
    return (_spec(cluster).get("gcsFaultToleranceOptions") or {}).get("backend") or "redis"


def _ft_head_embedded(cluster: dict, pod_spec: dict, ray: dict) -> None:
    """pod.go:178-211 configureEmbeddedFT: RocksDB on a claim mounted at /data/gcs (the test bed does not create
    the operator-managed claim, raycluster_controller.go:705)."""
    storage = (_spec(cluster).get("gcsFaultToleranceOptions") or {}).get("storage") or {}
    env = ray.setdefault("env", [])
    _env_default(env, "RAY_gcs_storage", "rocksdb")
    _env_default(env, "RAY_gcs_storage_path", "/data/gcs")
    mount = {"name": "gcs-storage", "mountPath": "/data/gcs"}
    if storage.get("subPath"):
        mount["subPath"] = storage["subPath"]
    ray.setdefault("volumeMounts", []).append(mount)
    claim = storage.get("claimName") or f"{cluster['metadata']['name']}-gcs-pvc"  # util.go:787
    pod_spec.setdefault("volumes", []).append({"name": "gcs-storage", "persistentVolumeClaim": {"claimName": claim}})


def _ft_head_redis(cluster: dict, ray: dict, annotations: dict, params: dict) -> None:
    """pod.go:117-173 configureRedisFT: the external storage namespace, the Redis address and credentials."""
    options = _spec(cluster).get("gcsFaultToleranceOptions")
    metadata = cluster["metadata"]
    namespace = (metadata.get("annotations") or {}).get("ray.io/external-storage-namespace") or metadata.get("uid", "")
    if options and options.get("externalStorageNamespace"):
        namespace = options["externalStorageNamespace"]
    annotations["ray.io/external-storage-namespace"] = namespace
    env = ray.setdefault("env", [])
    _env_default(env, "RAY_external_storage_namespace", namespace)
    if options is None:
        if "redis-password" in params:
            _env_default(env, "REDIS_PASSWORD", params["redis-password"])
        return
    env.append({"name": "RAY_REDIS_ADDRESS", "value": options.get("redisAddress", "")})
    for key, variable in (("redisUsername", "REDIS_USERNAME"), ("redisPassword", "REDIS_PASSWORD")):
        if options.get(key) is not None:
            param = "redis-username" if key == "redisUsername" else "redis-password"
            params[param] = f"${variable}"
            env.append({"name": variable, **{k: v for k, v in options[key].items() if k in ("value", "valueFrom")}})


# ---- BuildPod (pod.go:832-932) ----------------------------------------------------------------------------------


def build_pod(cluster: dict, node_type: str, group: dict, replica: tuple | None = None) -> dict:
    """A head or worker pod: its template completed as DefaultHeadPodTemplate / DefaultWorkerPodTemplate do, then
    BuildPod; replica is (index, replica name, host index) for a worker (RayMultiHostIndexing)."""
    template = json_copy(group.get("template") or {})
    pod_spec = template.get("spec") or {}
    ray = pod_spec.setdefault("containers", [{"name": "ray"}])[0]
    fqdn, port = fqdn_ray_ip(cluster), head_port(cluster)
    params = start_params(cluster, node_type, group)
    annotations = pod_annotations(cluster, node_type, group)
    if node_type == "worker":
        pod_spec.setdefault("initContainers", []).append(wait_gcs_ready(ray, fqdn, port))  # pod.go:606-658
    if ft_enabled(cluster) and node_type == "worker":
        _ft_worker_env(ray)
    elif ft_enabled(cluster) and _gcs_backend(cluster) == "rocksdb":
        _ft_head_embedded(cluster, pod_spec, ray)
    elif ft_enabled(cluster):
        _ft_head_redis(cluster, ray, annotations, params)
    _add_metrics_port(ray)
    if token_auth_enabled(cluster):  # pod.go:298-300 (head), 702-704 (worker)
        configure_token_auth(cluster, pod_spec, ray)
    if "plasma-directory" not in params:  # pod.go:857: no /dev/shm when the object store lives elsewhere
        add_shared_memory(pod_spec, ray)
    start = ray_start_command(node_type, params, ray.get("resources") or {})
    if annotations.get("ray.io/overwrite-container-cmd") != "true":
        set_ray_command(ray, start)
    for init_container in pod_spec.get("initContainers") or []:  # pod.go:915-917, 1193-1205
        init_container.setdefault("env", [])
        init_container["env"] += [
            {"name": "FQ_RAY_IP", "value": fqdn},
            {"name": "RAY_IP", "value": fqdn.split(".", maxsplit=1)[0]},
        ]
    add_ray_env(ray, cluster, node_type, start)
    add_probes(ray, node_type, creator_crd_type(cluster), params, _spec(cluster).get("rayVersion", ""))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _pod_metadata(cluster, node_type, group, replica, annotations),
        "spec": pod_spec,
    }


def token_auth_enabled(cluster: dict) -> bool:
    """util.go:796 IsAuthEnabled: authOptions.mode is token."""
    return ((_spec(cluster).get("authOptions") or {}).get("mode")) == "token"


def auth_secret_name(cluster: dict) -> str:
    """The Secret whose auth_token key holds the cluster's token: authOptions.secretName, else the one KubeRay makes
    (raycluster_controller.go:422-447, named CheckName(cluster name))."""
    return (_spec(cluster).get("authOptions") or {}).get("secretName") or check_name(cluster["metadata"]["name"])


def configure_token_auth(cluster: dict, pod_spec: dict, ray: dict) -> None:
    """pod.go:345-414 configureTokenAuth: RAY_AUTH_MODE and RAY_AUTH_TOKEN (from the Secret) in the Ray container
    and the wait-gcs-ready init container, where the template does not set them already."""
    for container in [ray] + [c for c in pod_spec.get("initContainers") or [] if c.get("name") == "wait-gcs-ready"]:
        env = container.setdefault("env", [])
        _env_default(env, "RAY_AUTH_MODE", "token")
        if not any(variable.get("name") == "RAY_AUTH_TOKEN" for variable in env):
            secret = {"name": auth_secret_name(cluster), "key": "auth_token"}
            env.append({"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": secret}})


def _pod_metadata(cluster: dict, node_type: str, group: dict, replica: tuple | None, annotations: dict) -> dict:
    """generateName from util.go:203 PodName (the API server adds 5 characters), the cluster's namespace
    (pod.go:226, 600) and KubeRay as the controller owner (raycluster_controller.go:1753, 1801)."""
    name = cluster["metadata"]["name"]
    prefix = name if node_type == "head" else f"{name}-{group.get('groupName', '')}"
    generate_name = pod_generate_name(prefix, node_type)
    metadata = {
        "generateName": generate_name,
        "name": generate_name + rand5(),
        "namespace": cluster["metadata"]["namespace"],
        "labels": pod_labels(cluster, node_type, group, replica),
        "ownerReferences": [owner_reference(cluster)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def add_shared_memory(pod_spec: dict, ray: dict) -> None:
    """pod.go:1548 addEmptyDir for /dev/shm: nothing when something is mounted there already; else a Memory
    emptyDir named shared-mem (unless a volume has that name) sized by the memory limit, else the request
    (pod.go:1574-1627)."""
    mounts = ray.setdefault("volumeMounts", [])
    if any(mount.get("mountPath") == "/dev/shm" for mount in mounts):
        return
    volumes = pod_spec.setdefault("volumes", [])
    if not any(volume.get("name") == "shared-mem" for volume in volumes):
        resources = ray.get("resources") or {}
        empty_dir = {"medium": "Memory"}
        for source in (resources.get("limits") or {}, resources.get("requests") or {}):
            if "memory" in source:
                empty_dir["sizeLimit"] = canonical_quantity(source["memory"])
                break
        volumes.append({"name": "shared-mem", "emptyDir": empty_dir})
    mounts.append({"mountPath": "/dev/shm", "name": "shared-mem"})


def set_ray_command(ray: dict, start: str) -> None:
    """pod.go:878-913: unless the container's command or args already run ``ray start``, run
    ``ulimit ...; ray start ... --block`` after them (joined with &&, since --block never returns)."""
    existing = "".join(f" {part} " for part in (ray.get("command") or []) + (ray.get("args") or []))
    if "ray start" in existing:
        return
    generated = f"{ULIMIT}; {start}"
    ray["command"] = list(CONTAINER_COMMAND)
    ray["args"] = [f"{existing} && {generated}" if existing else generated]


def add_ray_env(ray: dict, cluster: dict, node_type: str, start: str) -> None:
    """pod.go:1207 setContainerEnvVars, in its order; the variables marked 'if missing' keep a template's value."""
    env = ray.setdefault("env", [])
    fqdn, port = fqdn_ray_ip(cluster), head_port(cluster)
    ip = fqdn if node_type == "worker" else LOCAL_HOST
    if node_type == "worker":  # pod.go:1224-1231
        env += [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": fqdn.split(".", maxsplit=1)[0]}]
    env += [  # pod.go:1234-1280
        _field_env("RAY_CLUSTER_NAME", "metadata.labels['ray.io/cluster']"),
        _field_env("RAY_CLUSTER_NAMESPACE", "metadata.namespace"),
        _field_env("RAY_CLOUD_INSTANCE_ID", "metadata.name"),
        _field_env("RAY_NODE_TYPE_NAME", "metadata.labels['ray.io/group']"),
        {"name": "KUBERAY_GEN_RAY_START_CMD", "value": start},
    ]
    _env_default(env, "RAY_PORT", port)  # pod.go:1282
    if creator_crd_type(cluster) == "RayService":  # pod.go:1287-1301
        _env_default(env, "RAY_timeout_ms_task_wait_for_death_info", "0")
        _env_default(env, "RAY_gcs_server_request_timeout_seconds", "5")
        _env_default(env, "RAY_SERVE_KV_TIMEOUT_S", "5")
    _env_default(env, "RAY_ADDRESS", f"{ip}:{port}")  # pod.go:1304
    _env_default(env, "RAY_USAGE_STATS_KUBERAY_IN_USE", "1")  # pod.go:1309
    if node_type == "head":  # pod.go:1313-1319
        tags = f"kuberay_version={KUBERAY_VERSION};kuberay_crd={creator_crd_type(cluster)}"
        env.append({"name": "RAY_USAGE_STATS_EXTRA_TAGS", "value": tags})
    _env_default(env, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")  # pod.go:1321


def _field_env(name: str, field_path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _env_default(env: list, name: str, value: str) -> None:
    if not any(entry.get("name") == name for entry in env):
        env.append({"name": name, "value": value})


# ---- probes (pod.go:721-829) ------------------------------------------------------------------------------------


def _param_port(params: dict, key: str, default: int) -> int:
    """pod.go:733-741: a port from rayStartParams when it parses as an int32, else the default."""
    try:
        value = int(params.get(key, ""), 10)
    except ValueError:
        return default
    return value if -(2**31) <= value < 2**31 else default


def _wget(timeout: int, port: int, path: str) -> str:
    """utils/constant.go:340 BaseWgetHealthCommand."""
    return f"wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"


def add_probes(ray: dict, node_type: str, creator: str, params: dict, ray_version: str) -> None:
    """pod.go:732 initLivenessAndReadinessProbe, where the template sets none (ENABLE_PROBES_INJECTION unset):
    Ray >= 2.53 gets an HTTP GET of /api/healthz on the dashboard agent port; older Ray exec wget checks of the
    raylet and, on the head, the GCS. A RayService worker's readiness also checks its Serve proxy (exec)."""
    agent_port = _param_port(params, "dashboard-agent-listen-port", DEFAULT_AGENT_PORT)
    commands = [_wget(READINESS[1], agent_port, RAYLET_HEALTH_PATH)]  # pod.go:752-757
    if node_type == "head":  # pod.go:758-763: its timeout is the readiness failure threshold (10 s)
        commands.append(
            _wget(READINESS[5], _param_port(params, "dashboard-port", DEFAULT_DASHBOARD_PORT), GCS_HEALTH_PATH)
        )
    if ray_version_at_least(ray_version, UNIFIED_HEALTH_CHECK_SINCE):
        action = {"httpGet": {"path": NODE_HEALTH_PATH, "port": agent_port}}
    else:
        action = {"exec": {"command": ["bash", "-c", " && ".join(commands)]}}
    if not ray.get("livenessProbe"):
        ray["livenessProbe"] = _probe(action, LIVENESS, node_type)
    if not ray.get("readinessProbe"):
        ray["readinessProbe"] = _probe(action, READINESS, node_type)
        if creator == "RayService" and node_type == "worker":  # pod.go:816-827
            serve_port = next((p["containerPort"] for p in ray.get("ports") or [] if p.get("name") == "serve"), 8000)
            serve = _wget(READINESS[0], serve_port, SERVE_HEALTH_PATH)
            ray["readinessProbe"].pop("httpGet", None)
            ray["readinessProbe"]["exec"] = {"command": ["bash", "-c", " && ".join(commands + [serve])]}
            ray["readinessProbe"]["failureThreshold"] = SERVE_READINESS_FAILURE_THRESHOLD


def _probe(action: dict, timings: tuple, node_type: str) -> dict:
    initial_delay, timeout, head_timeout, period, success, failure = timings
    return {
        **json_copy(action),
        "initialDelaySeconds": initial_delay,
        "timeoutSeconds": head_timeout if node_type == "head" else timeout,
        "periodSeconds": period,
        "successThreshold": success,
        "failureThreshold": failure,
    }
