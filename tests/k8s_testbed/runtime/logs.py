# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Container logs as the kubelet keeps them: one file per container instance, in the CRI log format, rotated.

Layout (the kubelet's ``/var/log/pods`` layout under the test bed's state dir):
``<state>/logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``, rotated files beside it as
``<restartCount>.log.<n>`` (``n`` = 1 is the newest rotated file). Each line is ``<RFC3339Nano> <stream> F <text>``
as containerd writes it (long lines are not split into partial ``P`` records here). The current instance is the
highest restart count; ``previous`` is the one before it, which is what ``kubectl logs --previous`` reads.
"""

from __future__ import annotations

import os
import re
import threading

from ..timestamps import rfc3339_nano

MAX_FILE_BYTES = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize default
MAX_FILES = 5  # containerLogMaxFiles: the current file and four rotated ones
_LINE = re.compile(r"^(\S+) (stdout|stderr) [FP] ?(.*)$")


def container_log_dir(root: str, namespace: str, pod: str, uid: str, container: str) -> str:
    return os.path.join(root, f"{namespace}_{pod}_{uid}", container)


class LogWriter:
    """Appends one container instance's stdout and stderr lines to its log file, rotating by size.

    Both streams' reader threads share one writer, so lines interleave as they arrive."""

    def __init__(self, directory: str, instance: int, max_bytes: int = MAX_FILE_BYTES, max_files: int = MAX_FILES):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{instance}.log")
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._lock = threading.Lock()
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, stream: str, text: str) -> None:
        line = f"{rfc3339_nano()} {stream} F {text.rstrip(chr(10))}\n"
        with self._lock:
            if self._handle.closed:
                return
            if self._handle.tell() + len(line) > self.max_bytes:
                self._rotate()
            self._handle.write(line)
            self._handle.flush()

    def _rotate(self) -> None:
        self._handle.close()
        for number in range(self.max_files - 1, 0, -1):
            older = f"{self.path}.{number}"
            if os.path.exists(older):
                if number == self.max_files - 1:
                    os.unlink(older)
                else:
                    os.replace(older, f"{self.path}.{number + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._handle = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def pump_stream(stream, writer: LogWriter, name: str) -> None:
    """Copy a process's output stream into the log, line by line, until it closes (a reader thread's body)."""
    for raw in iter(stream.readline, b""):
        writer.write(name, raw.decode("utf-8", "replace"))
    stream.close()


def instances(directory: str) -> list:
    """The restart counts that have a log file, in order."""
    if not os.path.isdir(directory):
        return []
    found = {int(name.split(".", 1)[0]) for name in os.listdir(directory) if re.match(r"^\d+\.log", name)}
    return sorted(found)


def read_instance(directory: str, instance: int) -> list:
    """One instance's log as ``[(stamp, text)]``, rotated files first."""
    base = os.path.join(directory, f"{instance}.log")
    paths = [f"{base}.{n}" for n in range(MAX_FILES, 0, -1)] + [base]
    lines = []
    for path in paths:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines.extend(_parse(line) for line in handle)
    return [entry for entry in lines if entry is not None]


def _parse(line: str):
    match = _LINE.match(line.rstrip("\n"))
    return (match.group(1), match.group(3)) if match else None
