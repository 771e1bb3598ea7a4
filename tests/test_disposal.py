"""daemon.disposal: quarantine and on_success on real files."""

from __future__ import annotations

import json
import re

import pytest

from radiomicsd.daemon.disposal import dispose_input, quarantine_input


def test_quarantine_moves_the_file_under_an_opaque_name_with_its_note(tmp_path):
    src, qdir = tmp_path / "in" / "DOE_JANE_1999.avi", tmp_path / "q"
    src.parent.mkdir()
    qdir.mkdir()
    src.write_bytes(b"refused bytes")
    target = quarantine_input(src, qdir, {"reason": "truncated"})
    assert not src.exists() and target.read_bytes() == b"refused bytes"
    assert re.fullmatch(r"q-\d{8}T\d{6}Z-[0-9a-f]{8}", target.name)
    assert json.loads((qdir / f"{target.name}.json").read_text()) == {"reason": "truncated"}
    assert "DOE" not in "".join(p.name for p in qdir.iterdir())


def test_quarantine_of_a_vanished_input_still_writes_the_note(tmp_path):
    target = quarantine_input(tmp_path / "gone.avi", tmp_path, {"reason": "vanished"})
    assert not target.exists()
    assert json.loads(target.with_name(f"{target.name}.json").read_text())["reason"] == "vanished"


@pytest.mark.parametrize("policy", ["keep", "delete", "move"])
def test_dispose_policies(tmp_path, policy):
    in_dir, done = tmp_path / "in", tmp_path / "done"
    src = in_dir / "ward" / "clip.avi"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"first")
    went = dispose_input(src, policy, in_dir, done)
    assert src.exists() == (policy == "keep")
    if policy == "move":
        assert went == done / "ward" / "clip.avi" and went.read_bytes() == b"first"
        src.write_bytes(b"second")  # the same name again: both are kept
        again = dispose_input(src, policy, in_dir, done)
        assert again != went and again.read_bytes() == b"second" and went.read_bytes() == b"first"
    else:
        assert went is None
