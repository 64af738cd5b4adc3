"""The package layout promised by the design: every room installed as
``aloesim.<room>``, nothing generic at the top of site-packages, and the
Hydra configs inside the package (so a non-editable install finds them)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("core", "agents", "environment", "orchestration", "training", "evaluation", "inspection", "conf")


@pytest.mark.integration
def test_wheel_installs_rooms_under_one_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel = next(tmp_path.glob("aloesim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"aloesim"}, tops
    for room in ROOMS:
        assert f"aloesim/{room}/__init__.py" in names
    for cfg in ("aloesim/conf/train.yaml", "aloesim/conf/generate.yaml", "aloesim/conf/backend/embedded.yaml",
                "aloesim/conf/prompts/paper.yaml", "aloesim/conf/agents/default.yaml"):
        assert cfg in names, cfg
    # every config file and every package of the source tree made it into the wheel
    for path in (ROOT / "conf").rglob("*.yaml"):
        assert f"aloesim/conf/{path.relative_to(ROOT / 'conf').as_posix()}" in names, path
    for room in ROOMS:
        for init in (ROOT / room).rglob("__init__.py"):
            assert f"aloesim/{init.relative_to(ROOT).as_posix()}" in names, init



def test_pyproject_lists_every_package_of_the_tree() -> None:
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {  # every folder of a room: packages and data folders (conf groups, templates, seeds)
        "aloesim." + folder.relative_to(ROOT).as_posix().replace("/", ".")
        for room in ROOMS
        for folder in [ROOT / room, *(ROOT / room).rglob("*")]
        if folder.is_dir() and "__pycache__" not in folder.parts
    }
    assert declared == found
