# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Install helm into /usr/local/bin for kubernetes.core.helm (the operators' install mode runs it on the controller).

Runs in the EE build (meta/ee/execution-environment.yml, append_final) as root, with the EE's Python:
``install_helm.py v3.17.3``. It takes the official release archive from get.helm.sh and checks it against the
SHA-256 published beside it. Python only, so the image needs no curl or tar.
"""

import hashlib
import io
import os
import platform
import sys
import tarfile
import urllib.request

ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def fetch(url):
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def main(version):
    arch = ARCHES.get(platform.machine())
    if arch is None:
        sys.exit(f"install_helm.py: no helm build for {platform.machine()}")
    url = f"https://get.helm.sh/helm-{version}-linux-{arch}.tar.gz"
    archive = fetch(url)
    expected = fetch(url + ".sha256sum").decode().split()[0]
    actual = hashlib.sha256(archive).hexdigest()
    if actual != expected:
        sys.exit(f"install_helm.py: {url} has SHA-256 {actual}, get.helm.sh publishes {expected}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        binary = tar.extractfile(f"linux-{arch}/helm").read()
    with open("/usr/local/bin/helm", "wb") as out:
        out.write(binary)
    # 0755: jobs run as uid 1000.
    os.chmod("/usr/local/bin/helm", 0o755)
    print(f"helm {version} ({arch}, sha256 {actual}) -> /usr/local/bin/helm")


if __name__ == "__main__":
    main(sys.argv[1])
