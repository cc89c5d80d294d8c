"""Stands in for the pip bootstrap script ansible-test downloads from its CI file server, which CI cannot reach.

ansible-test runs it inside a new virtualenv made without pip, as
``python quiet_pip.py --disable-pip-version-check pip==<version> [--no-setuptools] [--no-wheel]``;
this installs the interpreter's bundled pip with ensurepip, then the requested pip from the package index.
"""

import subprocess
import sys

requested = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + requested)
