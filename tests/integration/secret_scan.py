"""Where a deployment's secrets must never show: the play's output, the Ray job list, the process list, the stored
Kubernetes objects other than Secrets, and the logs. Each helper returns ``{place: text}``; ``leaks`` says which
secret shows where."""

from __future__ import annotations

import glob
import json
import subprocess
from pathlib import Path


def leaks(secrets, places):
    """``["<secret name> in <place>", ...]`` for every secret value (of 8 characters or more) found in a place."""
    found = []
    for name, value in secrets.items():
        assert value and len(value) >= 8, "a secret to look for must be a real value: %s=%r" % (name, value)
        found += ["%s in %s" % (name, place) for place, text in places.items() if value in text]
    return found


def process_list():
    """Every process's command line, as `ps` shows it to any user of the machine."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {"the process list": out}


def log_files(*patterns):
    """The text of every file the glob patterns match (recursively with **)."""
    places = {}
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            if Path(path).is_file():
                places[path] = Path(path).read_bytes().decode(errors="replace")
    return places


def cluster_objects(bed, skip_kinds=("Secret",)):
    """Every object the test bed stores, by discovery (all API groups), except the kinds skipped."""
    places = {}
    for group_version in _group_versions(bed):
        prefix = "/api/v1" if group_version == "v1" else "/apis/" + group_version
        status, listing = bed.request("GET", prefix)
        assert status == 200, (prefix, listing)
        for resource in listing["resources"]:
            if "/" in resource["name"] or "list" not in resource.get("verbs", []) or resource["kind"] in skip_kinds:
                continue
            status, items = bed.request("GET", "%s/%s" % (prefix, resource["name"]))
            if status == 200:
                for item in items.get("items", []):
                    meta = item.get("metadata", {})
                    place = "%s %s/%s" % (resource["kind"], meta.get("namespace", ""), meta.get("name"))
                    places[place] = json.dumps(item)
    return places


def _group_versions(bed):
    versions = ["v1"]
    status, groups = bed.request("GET", "/apis")
    assert status == 200, groups
    for group in groups["groups"]:
        versions += [version["groupVersion"] for version in group["versions"]]
    return versions
