"""What the replica tests read from a Ray cluster's dashboard, on hosts and in KubeRay's pods: the requests each Serve
replica took, and the Jobs API's refusal of a job without the cluster's token (Ray's token authentication)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def requests_per_replica(nodes_summary, deployment, host=None):
    """``{replica id: requests}`` from Ray Serve's metrics (ray_serve_deployment_request_counter) on every live node.

    ``nodes_summary``: the dashboard's ``/nodes?view=summary`` list; ``host``: where the nodes' metrics ports are
    reached (None: each node's own address).
    """
    counts = {}
    for node in nodes_summary:
        raylet = node.get("raylet") or {}
        # A node killed by an earlier test stays listed, DEAD.
        if raylet.get("state") != "ALIVE" or not raylet.get("metricsExportPort"):
            continue
        url = "http://%s:%d/metrics" % (host or node["ip"], raylet["metricsExportPort"])
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("ray_serve_deployment_request_counter_total{") and f'deployment="{deployment}"' in line:
                replica = line.split('replica="', 1)[1].split('"', 1)[0]
                counts[replica] = counts.get(replica, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def jobs_api_refusals(dashboard):
    """The HTTP statuses of a job submitted without a token, then with a wrong one: (401, 403) under token auth."""
    job = json.dumps({"entrypoint": "echo not-allowed"}).encode()
    seen = []
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}):
        request = urllib.request.Request(
            dashboard + "/api/jobs/", data=job, headers=dict(headers, **{"Content-Type": "application/json"})
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                seen.append(response.status)
        except urllib.error.HTTPError as error:
            seen.append(error.code)
    return tuple(seen)
