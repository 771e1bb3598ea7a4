"""The README's "Reason codes" table lists every reason code the software produces, and no other.

Codes come from three places:

- the ``reason`` attribute of every :class:`RadiomicsError` subclass, found by importing every
  module of ``radiomicsd.pipeline`` and ``radiomicsd.daemon`` (so a class added anywhere there
  needs a README row);
- strings the daemon uses as reasons without an error class (:data:`DAEMON_CODES`, each checked
  to be still a string literal in the daemon's sources);
- the analysis outcomes of :mod:`radiomicsd.pipeline.rhd.analysis` (its ``STATUS_*`` constants).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import radiomicsd.daemon
import radiomicsd.pipeline
from radiomicsd.pipeline.errors import RadiomicsError

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Reason codes"

#: Reason codes the daemon produces as plain strings (no error class), and where.
DAEMON_CODES = (
    # daemon/attempt.py attempt(): the journal's claim of the content digest returns False
    "duplicate",
    # daemon/export.py Exporter.export(): OUT/<pseudonym>/ exists (before staging, at commit)
    "already_exported",
    # daemon/export.py Exporter.export(): select doppler and no Doppler in the first frame;
    # also status and reason of the results.json of such a video when it is analysed
    "not_doppler",
    # daemon/attempt.py attempt(): FileNotFoundError while opening or reading the input
    "vanished",
    # daemon/attempt.py attempt(): any exception that is not a RadiomicsError (a bug)
    "internal_error",
    # daemon/attempt.py attempt(): Cancelled, the daemon stopped before the commit
    "cancelled",
    # daemon/service.py: a version that changed under its worker, or during its grace period,
    # is released as skipped with this code (also pipeline.errors.ContentChanged's code)
    "content_changed",
    # daemon/journal.py requeue_unfinished(): work cut short by a crash max_attempts times
    "repeated_crash",
    # daemon/attempt.py attempt(): the content digest falls in another --shard
    "other_shard",
)

#: Top-level modules of the optional ``analysis`` extra (pyproject.toml).
ANALYSIS_EXTRA = frozenset({"tensorflow", "keras", "sklearn", "skimage"})


def _import_all(package: ModuleType) -> list[str]:
    """Import every module under ``package``; return the names skipped for a missing extra."""
    skipped = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top in ANALYSIS_EXTRA and importlib.util.find_spec(top) is None:
                skipped.append(info.name)
                continue
            raise
    return skipped


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


@pytest.fixture(scope="module")
def error_classes() -> dict[str, list[str]]:
    """Reason code -> names of the project's RadiomicsError subclasses carrying it."""
    for package in (radiomicsd.pipeline, radiomicsd.daemon):
        _import_all(package)
    codes: dict[str, list[str]] = {}
    for cls in _subclasses(RadiomicsError):
        if cls.__module__.startswith("radiomicsd."):  # not classes that tests define
            codes.setdefault(cls.reason, []).append(f"{cls.__module__}.{cls.__qualname__}")
    return codes


@pytest.fixture(scope="module")
def analysis_codes() -> set[str]:
    from radiomicsd.pipeline.rhd import analysis

    return {value for name, value in vars(analysis).items()
            if name.startswith("STATUS_") and name != "STATUS_GRADED"}


def readme_rows() -> list[list[str]]:
    """Cells of the table rows in the README's reason-code section (header rows dropped)."""
    text = README.read_text(encoding="utf-8")
    assert text.count(f"\n{SECTION}\n") == 1, f"README needs exactly one '{SECTION}' section"
    body = text.split(f"\n{SECTION}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the reason-code section has no table"
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows[2:]]


def readme_codes() -> list[str]:
    codes = []
    for cells in readme_rows():
        m = re.fullmatch(r"`([a-z][a-z0-9_]*)`", cells[0])
        assert m, f"first cell is not one `code`: {cells[0]!r}"
        codes.append(m.group(1))
    return codes


def daemon_string_literals() -> set[str]:
    """Every string constant in the daemon package's source files."""
    found: set[str] = set()
    for folder in radiomicsd.daemon.__path__:
        for source in sorted(Path(folder).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
            found.update(node.value for node in ast.walk(tree)
                         if isinstance(node, ast.Constant) and isinstance(node.value, str))
    return found


def test_table_has_one_well_formed_row_per_code() -> None:
    rows = readme_rows()
    for cells in rows:
        assert len(cells) == 4 and all(cells), f"need code, outcome, meaning, action: {cells}"
    codes = readme_codes()
    assert len(codes) == len(set(codes)), f"codes listed twice: {sorted(codes)}"


def test_discovery_imports_subpackages(error_classes: dict[str, list[str]]) -> None:
    """The walk reaches classes outside pipeline/errors.py (else the next test proves little)."""
    assert "radiomicsd.pipeline.deid.mask.NoScanSector" in error_classes.get("no_scan_sector", [])
    assert "radiomicsd.pipeline.errors.InputError" in error_classes.get("bad_input", [])


def test_every_error_class_code_is_in_the_table(error_classes: dict[str, list[str]]) -> None:
    missing = {code: names for code, names in error_classes.items()
               if code not in readme_codes()}
    assert not missing, f"reason codes without a README row ({SECTION}): {missing}"


def test_every_daemon_string_code_is_in_the_table() -> None:
    missing = sorted(set(DAEMON_CODES) - set(readme_codes()))
    assert not missing, f"daemon reason codes without a README row: {missing}"


def test_every_analysis_outcome_is_in_the_table(analysis_codes: set[str]) -> None:
    missing = sorted(analysis_codes - set(readme_codes()))
    assert not missing, f"analysis outcomes without a README row: {missing}"


def test_daemon_string_codes_are_still_produced() -> None:
    literals = daemon_string_literals()
    gone = sorted(code for code in DAEMON_CODES if code not in literals)
    assert not gone, f"no longer a string literal in daemon/ (drop from DAEMON_CODES): {gone}"


def reason_literals_in_daemon() -> set[str]:
    """String constants the daemon's sources use in the reason-shaped places: ``reason="x"``,
    ``<obj>.reason = "x"``, ``{"reason": "x"}`` and ``Outcome(<status>, "x", ...)``."""
    found: set[str] = set()

    def const(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)

    for folder in radiomicsd.daemon.__path__:
        for source in sorted(Path(folder).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                keyword = isinstance(node, ast.keyword) and node.arg == "reason"
                if keyword or isinstance(node, ast.Assign) and any(
                        isinstance(t, ast.Attribute) and t.attr == "reason" for t in node.targets):
                    const(node.value)
                elif isinstance(node, ast.Dict):
                    for k, v in zip(node.keys, node.values):
                        if isinstance(k, ast.Constant) and k.value == "reason":
                            const(v)
                elif isinstance(node, ast.Call) and len(node.args) >= 2 and getattr(
                        node.func, "id", getattr(node.func, "attr", None)) == "Outcome":
                    const(node.args[1])
    return found


def test_daemon_reason_literals_are_listed(error_classes: dict[str, list[str]]) -> None:
    """A new plain-string reason in the daemon must join DAEMON_CODES (and so the README)."""
    unlisted = sorted(reason_literals_in_daemon() - set(DAEMON_CODES) - set(error_classes))
    assert not unlisted, f"daemon reason strings missing from DAEMON_CODES: {unlisted}"


def test_no_stale_rows(error_classes: dict[str, list[str]], analysis_codes: set[str]) -> None:
    known = set(error_classes) | set(DAEMON_CODES) | analysis_codes
    stale = sorted(set(readme_codes()) - known)
    assert not stale, f"README rows for codes nothing produces any more: {stale}"
