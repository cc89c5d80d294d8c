# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""This host's pip configuration, lent to pip inside a build step and never written into a layer.

A machine with a private index, a CA of its own or wheels on disk says so in pip's configuration files and PIP_*
variables. A build step's pip sees the same: the configuration files pip reads here (``pip config debug``: the
env, global and user kinds; the user's files appear under the step's HOME), every local path their values and the
PIP_* variables name (a CA bundle, a constraints file, find-links folders, file:// indexes, and the folders a
file:// index's pages link to), read-only at the same path, and the PIP_* and proxy variables themselves. The mounts
go away after the step (``rootfs.mounted``).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass

from .rootfs import HostPath

STEP_HOME = "/root"
# "site" is the configuration of the venv running this builder, not of the machine.
MACHINE_KINDS = ("env", "global", "user")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
HREF = re.compile(r'href="([^"]+)"')


@dataclass(frozen=True)
class HostPip:
    host_paths: tuple  # rootfs.HostPath
    env: dict


def host_pip() -> HostPip:
    """What a build step needs to see of this host's pip configuration."""
    report = subprocess.run(
        [sys.executable, "-m", "pip", "config", "debug"], capture_output=True, text=True, check=True
    ).stdout
    files, values = parse_config_debug(report)
    env = {name: value for name, value in os.environ.items() if name.startswith("PIP_") or name in PROXY_VARIABLES}
    shown = {target: HostPath(path, target) for kind, path in files for target in [_target(kind, path)]}
    named = _local_paths(values + [value for name, value in env.items() if name.startswith("PIP_")])
    linked = {folder for path in named for folder in linked_folders(path)}
    for path in sorted(set(named) | linked):  # a folder before what lies in it, which it already shows
        if not any(path == shown_path or path.startswith(shown_path + os.sep) for shown_path in shown):
            shown[path] = HostPath(path, path)
    return HostPip(tuple(shown[target] for target in sorted(shown)), env)


def parse_config_debug(report: str) -> tuple[list, list]:
    """(existing configuration files as (kind, path), values) from ``pip config debug``'s report.

    The report lists each kind at the margin, its files indented by two (``PATH, exists: True``) with their
    ``section.key: value`` lines by four, and the environment variables under env_var as ``NAME='value'``.
    """
    files, values, kind = [], [], ""
    for line in report.splitlines():
        text = line.strip()
        if not line.startswith(" "):
            kind = text.rstrip(":")
        elif kind == "env_var":
            values.append(text.partition("=")[2].strip("'"))
        elif kind not in MACHINE_KINDS:
            continue
        elif line.startswith("    "):
            values.append(text.partition(": ")[2])
        elif text.endswith(", exists: True"):
            files.append((kind, text[: -len(", exists: True")]))
    return files, values


def _target(kind: str, path: str) -> str:
    """Where pip in the step looks for this file: a user's file under the step's HOME, the rest where it is."""
    home = os.path.expanduser("~")
    if kind == "user" and path.startswith(home + os.sep):
        return STEP_HOME + path[len(home) :]
    return path


def linked_folders(index: str) -> set:
    """The folders a local package index's project pages (``<index>/<project>/index.html``) link into: an index
    made by a mirror tool keeps its files beside it (``../../files/x.whl``), outside the folder pip is given."""
    folders = set()
    for page in glob.glob(os.path.join(glob.escape(index), "*", "index.html")):
        with open(page, errors="replace") as html:
            links = HREF.findall(html.read())
        for link in links:
            url = urllib.parse.urljoin("file://" + urllib.parse.quote(page), link)
            if url.startswith("file:"):
                folders.add(os.path.dirname(os.path.normpath(urllib.parse.unquote(urllib.parse.urlparse(url).path))))
    return {folder for folder in folders if os.path.isdir(folder)}


def _local_paths(values: list) -> list:
    """The existing absolute paths and file:// URLs among whitespace-separated configuration values."""
    paths = []
    for value in values:
        for token in value.split():
            path = urllib.parse.unquote(urllib.parse.urlparse(token).path) if token.startswith("file:") else token
            if os.path.isabs(path) and os.path.exists(path):
                paths.append(os.path.normpath(path))
    return paths
