"""The installed distribution: one import namespace (radiomicsd.*), a version from git, a CLI
whose every subcommand explains itself."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, install_wheel, run_radiomicsd

BIN = Path(sys.executable).parent
SUBCOMMANDS = ("watch", "anonymise", "analyse", "status", "check-config", "keygen", "train-rhd",
               "scone")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(prefix, env, wheel): the wheel of this checkout installed into a fresh prefix."""
    return install_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_one_top_level_package(installed) -> None:
    _, _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info",
                                                                            ".data"))}
    assert tops == {"radiomicsd"}
    for sub in ("daemon/service.py", "pipeline/deid/mask.py", "pipeline/rhd/view.py",
                "classifiers/view_cnn.weights.h5", "testing/synthetic.py", "scone.py"):
        assert f"radiomicsd/{sub}" in names


@pytest.mark.parametrize("generic", ["daemon", "pipeline", "classifiers"])
def test_generic_names_are_not_importable_from_the_installed_package(installed, tmp_path,
                                                                     generic) -> None:
    prefix, env, _ = installed
    res = subprocess.run([str(prefix / "bin" / "python"), "-c", f"import {generic}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "ModuleNotFoundError" in res.stderr


def test_version_comes_from_git_and_the_cli_prints_it(installed, tmp_path) -> None:
    prefix, env, _ = installed
    res = subprocess.run([str(prefix / "bin" / "radiomicsd"), "--version"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    printed = res.stdout.strip()
    assert re.fullmatch(r"radiomicsd \d+\.\d+\.\d+\S*", printed), printed
    described = subprocess.run(["git", "-C", str(REPO), "describe", "--tags", "--abbrev=0"],
                               capture_output=True, text=True)
    if described.returncode == 0:  # a clone without tags builds the fallback version
        tag = described.stdout.strip().lstrip("v")
        major, minor, patch = (int(x) for x in tag.split("."))
        version = printed.split()[1]
        assert version == tag or version.startswith(f"{major}.{minor}.{patch + 1}.dev")
    # the editable install of the test environment answers too (its metadata dates from when it
    # was installed, so only the release part must agree)
    editable = run_radiomicsd("--version").stdout.split()
    assert editable[0] == "radiomicsd" and editable[1].split(".")[:3] == \
        printed.split()[1].split(".")[:3]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_a_description(command) -> None:
    res = run_radiomicsd(command, "--help")
    assert res.returncode == 0, res.stderr
    usage, _, rest = res.stdout.partition("\n\n")
    assert usage.startswith("usage: radiomicsd")
    first = rest.splitlines()[0] if rest else ""
    assert first and not first.startswith(("positional arguments", "options")), res.stdout


def test_debug_logs_at_debug_level_without_paths(tmp_path, clip_factory) -> None:
    clip = clip_factory("SMITH_JOHN_4711.avi", 6)
    out = tmp_path / "out"
    res = run_radiomicsd("anonymise", "-i", clip.path.parent, "-o", out, "--state",
                         tmp_path / "state", "--debug", "--log-format", "json")
    assert res.returncode == 0, res.stderr
    assert '"level": "debug"' in res.stderr
    assert "SMITH_JOHN" not in res.stderr + res.stdout
