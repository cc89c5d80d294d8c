# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Command line of the local images (as root; the store is LLMOPS_IMAGE_STORE or ~/.cache/llmops-ray-vllm/images).

PYTHONPATH=tests python -m k8s_testbed.images build [--only REF ...] [--force] [--verbose]
PYTHONPATH=tests python -m k8s_testbed.images list
PYTHONPATH=tests python -m k8s_testbed.images path REF     # its unpacked layer dirs, bottom first
PYTHONPATH=tests python -m k8s_testbed.images rm REF ...   # forget images (gc then frees their layers)
PYTHONPATH=tests python -m k8s_testbed.images gc
"""

from __future__ import annotations

import argparse
import signal
import sys

from .build import Builder, BuildError, is_current, load_definitions
from .definitions import DefinitionError
from .store import ImageStore, image_ref


def _build(store: ImageStore, args) -> int:
    Builder(store, force=args.force, verbose=args.verbose).build(load_definitions(), args.only)
    return 0


def _list(store: ImageStore, args) -> int:
    definitions = {reference: d for d in load_definitions() for reference in d.references()}
    for reference in store.references():
        digest = store.index_entry(reference)["digest"]
        layers = store.read_json_blob(digest)["layers"]
        size = sum(layer["size"] for layer in layers) / 2**20
        print(f"{reference}  {digest}  {len(layers)} layers  {size:.0f} MiB  {_state(store, definitions, reference)}")
    return 0


def _state(store: ImageStore, definitions: dict, reference: str) -> str:
    if reference not in definitions:
        return "not defined in this checkout"
    return "current" if is_current(store, definitions[reference], reference) else "stale: its definition changed"


def _path(store: ImageStore, args) -> int:
    image = store.resolve(args.reference)
    if image is None:
        print(f"{image_ref(args.reference)} is not stored in {store.root}; build it: make images", file=sys.stderr)
        return 1
    print("\n".join(image.layer_dirs))
    return 0


def _remove(store: ImageStore, args) -> int:
    with store.locked("removing images"):
        missing = [reference for reference in args.references if not store.remove(reference)]
    for reference in missing:
        print(f"{image_ref(reference)} was not stored", file=sys.stderr)
    return 1 if missing else 0


def _gc(store: ImageStore, args) -> int:
    keep = [key for definition in load_definitions() for key in definition.layer_keys()]
    with store.locked("collecting garbage"):
        removed = store.collect_garbage(keep_cache_keys=keep)
    print(f"removed {len(removed['layers'])} layers and {len(removed['blobs'])} blobs", end="")
    print(f"; kept {len(removed['in_use'])} layers that overlay mounts use now" if removed["in_use"] else "")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8s_testbed.images", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the images that are missing or whose definition changed")
    build.add_argument("--only", nargs="+", metavar="REF", help="only these references")
    build.add_argument("--force", action="store_true", help="rebuild every layer, ignoring the layer cache")
    build.add_argument("--verbose", action="store_true", help="print every line the build steps print")
    build.set_defaults(run=_build)
    commands.add_parser("list", help="the stored images").set_defaults(run=_list)
    path = commands.add_parser("path", help="an image's unpacked layer dirs, bottom first")
    path.add_argument("reference")
    path.set_defaults(run=_path)
    remove = commands.add_parser("rm", help="forget stored images")
    remove.add_argument("references", nargs="+", metavar="REF")
    remove.set_defaults(run=_remove)
    commands.add_parser("gc", help="remove layers and blobs no image uses").set_defaults(run=_gc)
    args = parser.parse_args(argv)
    # A terminated build unwinds like an interrupted one: its mounts are undone and nothing is published.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return args.run(ImageStore(), args)
    except (BuildError, DefinitionError) as error:
        print(f"images: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
