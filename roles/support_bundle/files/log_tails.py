# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print, as JSON items for the support bundle, the last lines of a Ray node's logs. Read-only.

Usage: log_tails.py LOGS_DIR MEMBER_PREFIX LINES PATTERN...  (patterns are globs relative to LOGS_DIR; the newest
40 files that match are read). A file that cannot be read becomes an item with its error.
"""

import collections
import glob
import json
import os
import sys


def main():
    logs, prefix, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
    found = set()
    for pattern in sys.argv[4:]:
        found.update(path for path in glob.glob(os.path.join(logs, pattern)) if os.path.isfile(path))
    items = []
    if not os.path.isdir(logs):
        items.append({"name": prefix + "/README", "error": "no log directory %s on this node" % logs})
    for path in sorted(found, key=os.path.getmtime, reverse=True)[:40]:
        name = prefix + "/" + os.path.relpath(path, logs)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                tail = collections.deque(handle, maxlen=lines)
            items.append({"name": name, "content": "".join(tail)})
        except OSError as error:
            items.append({"name": name, "error": str(error)})
    print(json.dumps(items))


if __name__ == "__main__":
    main()
