"""Build the Lambda zips (dist/ingest.zip, dist/transform.zip); `make build` runs
scripts/build_lambdas.py, which prints what this returns.

A zip holds `lambdas/<name>/` and `lambdas/shared/` (plus `lambdas/__init__.py`), so the handler is
`lambdas.<name>.app.handler` in the repo, in tests and in AWS. Entries are sorted with fixed
timestamps: the same source gives the same bytes (and the same Terraform source hash).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("ingest", "transform")
HANDLERS = {name: f"lambdas.{name}.app.handler" for name in FUNCTIONS}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def zip_members(name: str) -> list[Path]:
    files = [ROOT / "lambdas" / "__init__.py"]
    for folder in (ROOT / "lambdas" / name, ROOT / "lambdas" / "shared"):
        files += [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def build_zip(name: str, out_dir: str | os.PathLike) -> Path:
    if name not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}; known: {', '.join(FUNCTIONS)}")
    out = Path(out_dir) / f"{name}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in zip_members(name):
            info = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out


def build_all(out_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """Every function's zip, with its handler string."""
    return [(build_zip(name, out_dir), HANDLERS[name]) for name in FUNCTIONS]
