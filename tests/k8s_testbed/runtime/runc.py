# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The runc command line, with the runtime's own state root so its containers never mix with anyone else's.

Each container runs as ``runc run --bundle B ID`` in the foreground: runc stays the parent of the container's
process, forwards the signals ``runc kill`` sends, and exits with its status, so a plain ``Popen.wait`` gives the
exit code (128 + signal for a killed process) and its pipes are the container's stdout and stderr.
"""

from __future__ import annotations

import json
import shutil
import subprocess

RUNC = "runc"


class RuncError(RuntimeError):
    """runc refused a command; the message has the command and runc's own words."""


def runc_binary() -> str | None:
    return shutil.which(RUNC)


class Runc:
    def __init__(self, state_root: str):
        self.state_root = state_root

    def _argv(self, *args: str) -> list:
        return [RUNC, "--root", self.state_root, *args]

    def _call(self, *args: str, timeout: float = 30) -> str:
        completed = subprocess.run(self._argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if completed.returncode != 0:
            raise RuncError(f"runc {' '.join(args)} failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed.stdout

    def run(self, bundle: str, container_id: str) -> subprocess.Popen:
        """Start the container; the returned process lives as long as it does."""
        return subprocess.Popen(
            self._argv("run", "--bundle", bundle, container_id),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def exec_argv(self, container_id: str, command: list) -> list:
        """The argv that runs ``command`` inside the running container (its environment and working dir)."""
        return self._argv("exec", container_id, *command)

    def kill(self, container_id: str, signal_name: str = "TERM") -> bool:
        """Signal the container's process; False when it is already gone."""
        try:
            self._call("kill", container_id, signal_name)
        except RuncError:
            return False
        return True

    def delete(self, container_id: str) -> None:
        """Remove what runc keeps of a stopped container (forced: a leftover may still run)."""
        try:
            self._call("delete", "--force", container_id)
        except RuncError as error:
            if "does not exist" not in str(error) and "not exist" not in str(error):
                raise

    def list_ids(self) -> list:
        """The ids runc knows under this state root."""
        try:
            listed = json.loads(self._call("list", "--format", "json") or "null")
        except (RuncError, ValueError):
            return []
        return [entry["id"] for entry in listed or []]

    def pids(self, container_id: str) -> list:
        try:
            return json.loads(self._call("ps", "--format", "json", container_id) or "[]")
        except (RuncError, ValueError):
            return []
