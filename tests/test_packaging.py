"""The package as others get it: a wheel that runs outside the checkout, and the citation file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_citation_file_has_cffs_required_keys():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["message"] and cff["title"] and cff["authors"]
    titles = [reference["title"] for reference in cff["references"]]
    assert "DeepPose: Human Pose Estimation via Deep Neural Networks" in titles
    assert any(r.get("repository-code", "").endswith("ynaka81/DeepPoseComparison") for r in cff["references"])


def packaging_copy(dest: Path) -> Path:
    """The tracked files a wheel is built from, copied, so that the build leaves nothing in the tree."""
    files = subprocess.run(
        [
            "git",
            "ls-files",
            "-co",
            "--exclude-standard",
            "deeppose",
            "pyproject.toml",
            "README.md",
            "LICENSE",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_the_wheel_runs_and_validates_outside_the_checkout(tmp_path):
    source = packaging_copy(tmp_path / "source")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = (source / "dist").glob("deeppose-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"deeppose/schemas/params.schema.yaml", "deeppose/report/report.md.j2"} <= set(names)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(ROOT / "params.yaml", elsewhere / "params.yaml")
    (elsewhere / "bad.yaml").write_text(
        (ROOT / "params.yaml").read_text().replace("frameworks: [pytorch, chainer]", "frameworks: [mxnet]")
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True)

    where = python("-c", "import deeppose; print(deeppose.__file__)")
    assert where.stdout.strip() == str(site / "deeppose" / "__init__.py"), where.stderr
    help_ = python("-m", "deeppose", "--help")
    assert help_.returncode == 0 and "synthesize" in help_.stdout, help_.stderr
    check = "from deeppose.config import load_params; print(load_params('{}').grid.frameworks)"
    good = python("-c", check.format("params.yaml"))
    assert good.returncode == 0 and "pytorch" in good.stdout, good.stderr
    bad = python("-c", check.format("bad.yaml"))
    assert "grid.frameworks[0]: unknown framework 'mxnet'" in bad.stderr, bad.stderr[-2000:]
