# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What one running test bed holds besides the objects: pod logs, service backends, faults, test requests.

The server and the controllers share one TestBedState; tests change it through the /testbed/v1 admin API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import resources, store
from .timestamps import rfc3339_nano


@dataclass
class Fault:
    """Fail or delay the next `count` requests that match."""

    count: int
    status: int = 500  # 0 = do not fail, only delay
    delay_seconds: float = 0.0
    method: str = ""  # "" = any
    path_regex: str = ""  # "" = any (matched with re.search against the path)
    message: str = "injected fault"


@dataclass
class TestBedState:
    registry: resources.ResourceRegistry
    objects: store.Store
    seed: dict = field(default_factory=dict)
    # (namespace, pod, container) -> [(RFC3339Nano timestamp, line)]
    pod_logs: dict = field(default_factory=dict)
    # (namespace, service, port as written in the Service: number or name) -> base URL, e.g. http://127.0.0.1:8265
    service_backends: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    # Outcomes tests ask for before the object exists: ("Job", namespace, name) -> {"outcome": "Failed", "log": "..."}
    requested_outcomes: dict = field(default_factory=dict)
    # Pods the test crash-loops: (namespace, name) -> reason; nodes the test marks NotReady: names.
    crashlooping_pods: dict = field(default_factory=dict)
    not_ready_nodes: set = field(default_factory=set)
    exec_root: str = ""  # per-pod working directories for exec live under it (pods that are records)
    runtime: object = None  # runtime.PodRuntime when pods run as containers, else None
    images: object = None  # images.store.ImageStore: the local images such pods run

    def append_log(self, namespace: str, pod: str, container: str, line: str) -> None:
        self.pod_logs.setdefault((namespace, pod, container), []).append((rfc3339_nano(), line))

    def type_of(self, api_version: str, kind: str):
        resource_type = self.registry.for_kind(api_version, kind)
        if resource_type is None:
            raise KeyError(f"{api_version} {kind} is not served")
        return resource_type
