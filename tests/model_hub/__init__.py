# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A local Hugging Face- and ModelScope-compatible model hub for tests: model directories served as model
repositories, so the collection's downloads run for real with no internet (README.md).

- ``Repository``: a directory as one commit whose sha comes from the files' contents;
- ``HubServer`` / ``serve``: the HTTP APIs huggingface_hub's and modelscope's snapshot_download use;
- ``LocalHub``: started for a test in a thread or a process, and stopped;
- ``python -m model_hub serve --repo ORG/NAME=DIR``: the same from a shell.
"""

from __future__ import annotations

from .local import LocalHub
from .repository import Repository, RepositoryError
from .server import HubServer, serve

__all__ = ["HubServer", "LocalHub", "Repository", "RepositoryError", "serve"]
