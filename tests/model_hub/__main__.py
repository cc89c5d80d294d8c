# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Serve model directories as Hugging Face and ModelScope model repositories (both APIs on one port):

PYTHONPATH=tests python -m model_hub serve --repo ORG/NAME=DIR [--repo ...] [--host 127.0.0.1] [--port 0]

Prints the hub's URL on the first line, then one line per repository: ``ORG/NAME <commit sha> <files> files <bytes>
bytes <dir>``. Point huggingface_hub at the URL (``endpoint=`` or HF_ENDPOINT; the collection's
``model_storage_endpoint``; modelscope: MODELSCOPE_ENDPOINT). Requests are logged to stderr. Stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .repository import Repository, RepositoryError
from .server import serve


def _repo_argument(text):
    repo_id, separator, directory = text.partition("=")
    if not separator or not repo_id or not directory:
        raise argparse.ArgumentTypeError(f"{text!r} is not ORG/NAME=DIR")
    return repo_id, directory


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m model_hub", description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="serve model directories until stopped")
    serve_command.add_argument(
        "--repo", action="append", required=True, type=_repo_argument, help="ORG/NAME=DIR, repeatable"
    )
    serve_command.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for pods behind a bridge)"
    )
    serve_command.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        repositories = {repo_id: Repository(repo_id, directory) for repo_id, directory in args.repo}
    except RepositoryError as error:
        print(f"model_hub: {error}", file=sys.stderr)
        return 2
    server = serve(repositories, args.host, args.port)
    print(server.url, flush=True)
    for repository in repositories.values():
        print(
            f"{repository.repo_id} {repository.sha} {len(repository.files)} files {repository.total_bytes()} bytes "
            f"{repository.directory}",
            flush=True,
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
