"""Each Lambda zip alone is enough to import its handler: the import paths match AWS."""

import subprocess
import sys
import zipfile

import pytest

from ops.build import HANDLERS, build_zip


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_the_zip_unpacked_into_an_empty_folder_imports_its_handler(tmp_path, name):
    zip_path = build_zip(name, tmp_path / "dist")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    assert f"lambdas/{name}/app.py" in names and "lambdas/shared/work_unit.py" in names
    assert not any(n.startswith("ops/") for n in names)
    module, _, attr = HANDLERS[name].rpartition(".")
    code = (
        "import sys, importlib; sys.path.insert(0, sys.argv[1]);"
        f"m = importlib.import_module({module!r}); assert callable(getattr(m, {attr!r}));"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__;"
        "assert not [n for n in sys.modules if n.split('.')[0] in ('ops', 'click', 'tqdm', 'tenacity')]"
    )
    subprocess.run([sys.executable, "-c", code, str(unpacked)], cwd=unpacked, check=True,
                   env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})


def test_the_zip_is_reproducible(tmp_path):
    a = build_zip("transform", tmp_path / "a").read_bytes()
    b = build_zip("transform", tmp_path / "b").read_bytes()
    assert a == b
