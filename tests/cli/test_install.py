"""`pip install ./cli` builds and installs the package, and its `shipmate` entry point
runs. Debian's python3 builds it (its pip, setuptools and wheel, no index); click and
httpx come from the project's .venv through a .pth file."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

from tests.cli.conftest import CLI_DIR


def test_pip_install_of_cli_gives_a_working_shipmate_command(tmp_path: Path):
    source = shutil.copytree(CLI_DIR, tmp_path / "cli")  # the build leaves build/ and egg-info behind
    venv = tmp_path / "venv"
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True
    )
    installed = subprocess.run(
        [
            venv / "bin/python",
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            source,
        ],
        capture_output=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout.decode() + installed.stderr.decode()
    site = subprocess.run(
        [venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "shipmate-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    shown = subprocess.run([venv / "bin/shipmate", "--help"], capture_output=True, timeout=60)

    assert shown.returncode == 0, shown.stderr.decode()
    assert b"Usage: shipmate" in shown.stdout and b"deploy" in shown.stdout
