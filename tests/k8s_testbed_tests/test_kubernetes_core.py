# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kubernetes.core's k8s, k8s_info, k8s_exec and k8s_log against the test bed, through ansible-playbook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PLAYBOOK = Path(__file__).with_name("playbooks") / "kubernetes_core.yml"


def test_kubernetes_core_modules_work_against_the_test_bed(testbed):
    env = testbed.env()
    env.pop("ANSIBLE_CONFIG", None)  # the repository's callbacks are not needed here
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(PLAYBOOK),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:] + "\n--- server log ---\n" + testbed.server_log()[-3000:]
    assert "failed=0" in output
    assert os.path.exists(testbed.kubeconfig)
