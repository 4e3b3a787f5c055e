"""`make build`: write dist/ingest.zip and dist/transform.zip and say what was built."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.build import build_all  # noqa: E402

if __name__ == "__main__":
    for path, handler in build_all(sys.argv[1] if len(sys.argv) > 1 else "dist"):
        print(f"{path} ({path.stat().st_size} bytes, handler {handler})")
