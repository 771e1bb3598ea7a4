"""The CLI's remaining commands end to end: check-config, analyse, anonymise --analyse,
train-rhd, and analysis inside a running ``watch``."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, SMALL, cli_env, run_radiomicsd

from radiomicsd.daemon.settings import Settings, to_mapping
from radiomicsd.pipeline.rhd.grade import RhdModel
from radiomicsd.pipeline.rhd.texture import VIDEO_FEATURE_NAMES


def test_check_config_prints_the_defaults_of_config_example() -> None:
    res = run_radiomicsd("check-config", "-c", REPO / "config.example.yml")
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout) == to_mapping(Settings())


@pytest.fixture(scope="module")
def analysed(clip_factory, tmp_path_factory):
    """``radiomicsd analyse`` over a PLAX Doppler, an A4C Doppler and a B-mode clip."""
    root = tmp_path_factory.mktemp("analyse")
    inp = root / "in"
    inp.mkdir()
    clips = {
        "plax": clip_factory("plax.avi", 24, (640, 480), view="plax", seed=11),
        "a4c": clip_factory("a4c.avi", 24, (640, 480), view="a4c", seed=12),
        "bmode": clip_factory("bmode.avi", 12, SMALL, doppler=False, seed=13),
    }
    for name, info in clips.items():
        (inp / f"{name}.avi").write_bytes(info.path.read_bytes())
    res = run_radiomicsd("analyse", "-i", inp, "-o", root / "out", "--state", root / "st")
    return res, root / "out"


def _results(out: Path) -> dict[str, dict]:
    return {d["status"]: d for d in (json.loads(p.read_text())
                                     for p in out.glob("*/results.json"))}


def test_analyse_writes_results_per_video_and_a_features_table(analysed) -> None:
    res, out = analysed
    assert res.returncode == 0, res.stderr
    results = _results(out)
    assert set(results) == {"graded", "not_plax", "not_doppler"}
    graded = results["graded"]
    assert graded["view"] == "PLAX" and graded["view_fractions"]["PLAX"] > 0.5
    assert sorted(graded["features"]) == sorted(VIDEO_FEATURE_NAMES)
    assert graded["grade"]["name"] in ("normal", "RHD")
    assert 0.0 <= graded["grade"]["probability"] <= 1.0
    assert graded["models"]["view"]["version"] and graded["models"]["rhd"]["version"]
    assert graded["software"]["name"] == "radiomicsd"
    assert results["not_plax"]["reason"] == "not_plax" and results["not_plax"]["view"] == "A4C"
    assert results["not_doppler"]["reason"] == "not_doppler"
    assert not list(out.glob("*/*.png")), "analyse writes results only"
    with open(out / "features.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    row = next(r for r in rows if r["status"] == "graded")
    assert row["pseudonym"] == graded["pseudonym"]
    assert float(row["max_maxVelocity"]) == pytest.approx(graded["features"]["max_maxVelocity"])


def test_analysis_keeps_the_json_log_stream_clean(analysed) -> None:
    """TensorFlow's native start-up lines must not land between our JSON log lines."""
    res, _ = analysed
    lines = res.stderr.splitlines()
    assert lines, "analyse logs one line per video"
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_analysis_without_its_extra_is_a_usage_error(tmp_path) -> None:
    """Without TensorFlow (simulated: the module is made unimportable), enabling analysis
    exits 2 with the install hint instead of a traceback."""
    code = ("import sys; sys.modules['tensorflow'] = None; from radiomicsd.daemon.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, "analyse", "-i", str(tmp_path), "-o",
                          str(tmp_path / "out"), "--state", str(tmp_path / "st")],
                         env=cli_env(), capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2, res.stderr
    assert "radiomicsd[analysis]" in res.stderr and "Traceback" not in res.stderr


def test_anonymise_with_analysis_writes_results_beside_the_frames(clip_factory, tmp_path):
    info = clip_factory("plax.avi", 24, (640, 480), view="plax", seed=11)
    res = run_radiomicsd("anonymise", "--analyse", "-i", info.path, "-o", tmp_path / "out",
                         "--state", tmp_path / "st")
    assert res.returncode == 0, res.stderr
    [folder] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert len(list(folder.glob("*.png"))) == 24
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "graded"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"]["view"]["name"]


def test_train_rhd_refits_from_the_features_table(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 57))
    labels = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(int)
    table = tmp_path / "features.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pseudonym", *VIDEO_FEATURE_NAMES, "label"])
        for i, (row, label) in enumerate(zip(x, labels, strict=True)):
            w.writerow([f"p{i}", *row, label])
    res = run_radiomicsd("train-rhd", table, "-o", tmp_path / "model.json")
    assert res.returncode == 0, res.stderr
    model = RhdModel.from_json(tmp_path / "model.json")
    predicted = [model.predict(row).label for row in x]
    assert np.mean(np.array(predicted) == labels) >= 0.9
    bad = run_radiomicsd("train-rhd", tmp_path / "missing.csv", "-o", tmp_path / "m2.json")
    assert bad.returncode == 2


def test_watch_with_analysis_enabled_commits_results(clip_factory, tmp_path) -> None:
    info = clip_factory("plax.avi", 24, (640, 480), view="plax", seed=11)
    cfg = {"input_dir": str(tmp_path / "in"), "output_dir": str(tmp_path / "out"),
           "state_dir": str(tmp_path / "st"), "quarantine_dir": str(tmp_path / "q"),
           "settle_seconds": 0.5, "workers": 1, "metrics": {"enabled": False},
           "analysis": {"enabled": True}}
    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg))
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "radiomicsd", "watch", "-c",
                             str(tmp_path / "c.yml")], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 120
        while b"watch.ready" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)
        (tmp_path / "in" / "v.part").write_bytes(info.path.read_bytes())
        (tmp_path / "in" / "v.part").rename(tmp_path / "in" / "v.avi")
        results = tmp_path / "out"
        while time.monotonic() < deadline and not list(results.glob("*/manifest.json")):
            time.sleep(0.2)
        [done] = list(results.glob("*/results.json"))
        assert json.loads(done.read_text())["status"] == "graded"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_a_video_run_imports_no_dicom_library(clip_factory, tmp_path) -> None:
    """pydicom and pynetdicom cost ~0.25 s of start-up: only DICOM input, DICOM output and the
    SCP load them (the video path, the settings and the SCP's settings do not)."""
    info = clip_factory("clip.avi", 12)
    code = ("import sys; from radiomicsd.daemon.cli import main; rc = main(sys.argv[1:]); "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydicom', 'pynetdicom')); print(loaded); sys.exit(rc or (1 if loaded else 0))")
    res = subprocess.run([sys.executable, "-c", code, "anonymise", "--select", "all", "-i",
                          str(info.path.parent), "-o", str(tmp_path / "out"), "--state",
                          str(tmp_path / "st")], env=cli_env(), capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("[]")
