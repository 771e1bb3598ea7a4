"""Typed settings: one schema (default, validation, doc per field), config.example.yml checked
against it, every number validated, an empty file refused, regions mode only when accepted."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml
from conftest import REPO

from radiomicsd.daemon.settings import Settings, build, load_settings, to_mapping
from radiomicsd.pipeline.deid.mask import PILOT_REGION, MaskMethod, Region
from radiomicsd.pipeline.doppler import DopplerSettings
from radiomicsd.pipeline.errors import ConfigError
from radiomicsd.pipeline.video import Limits


def _config(tmp_path, text: str) -> Settings:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return load_settings(path)


def _fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield prefix + f.name, f
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _fields(hints[f.name], f"{prefix}{f.name}.")


def test_every_setting_has_a_doc_and_config_example_documents_exactly_the_defaults():
    for name, f in _fields(Settings):
        assert f.metadata.get("doc"), f"{name} has no doc"
    documented = yaml.safe_load((REPO / "config.example.yml").read_text())
    assert build(Settings, documented) == Settings()

    def keys(tree: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in tree.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return out

    assert keys(documented) == keys(to_mapping(Settings()))  # every key written down


def test_defaults_build_the_pipeline_settings():
    s = load_settings()
    assert s == Settings()
    assert s.limits == Limits() and s.doppler == DopplerSettings()
    assert s.mask.method is MaskMethod.AUTO_REGIONS and s.mask.regions == (PILOT_REGION,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 3  # type: ignore[misc]


def test_unknown_key_named(tmp_path):
    with pytest.raises(ConfigError, match="'wokers'.*known:.*workers"):
        _config(tmp_path, "wokers: 2\n")
    with pytest.raises(ConfigError, match="'limits.max_frame'"):
        _config(tmp_path, "limits:\n  max_frame: 2\n")


def test_bad_choice_names_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match="'select'.*allowed: doppler, all"):
        _config(tmp_path, "select: bmode\n")
    with pytest.raises(ConfigError, match="'mask.method'.*auto\\+regions, auto, regions"):
        _config(tmp_path, "mask:\n  method: everything\n")
    with pytest.raises(ConfigError, match="'logging.level'.*debug"):
        _config(tmp_path, "logging:\n  level: loud\n")


@pytest.mark.parametrize("text, key", [
    ("workers: two\n", "'workers'"),
    ("workers: true\n", "'workers'"),
    ("workers: -1\n", "'workers' must be >= 0"),
    ("settle_seconds: soon\n", "'settle_seconds'"),
    ("settle_seconds: -2\n", "'settle_seconds' must be >= 0"),
    ("settle_seconds: .nan\n", "'settle_seconds' must be a finite number"),
    ("rescan_seconds: 0\n", "'rescan_seconds' must be > 0"),
    ("retry_base_seconds: -1\n", "'retry_base_seconds'"),
    ("max_attempts: 0\n", "'max_attempts' must be >= 1"),
    ("shutdown_timeout: -1\n", "'shutdown_timeout'"),
    ("incomplete_grace_seconds: -0.5\n", "'incomplete_grace_seconds'"),
    ("limits: 5\n", "'limits' must be a mapping"),
    ("limits:\n  max_frames: 1.5\n", "'limits.max_frames'"),
    ("limits:\n  max_frames: -5\n", "'limits.max_frames' must be >= 0"),
    ("limits:\n  max_file_bytes: -1\n", "'limits.max_file_bytes' must be >= 0"),
    ("limits:\n  max_frame_pixels: -1\n", "'limits.max_frame_pixels' must be >= 0"),
    ("png:\n  compression: fast\n", "'png.compression'"),
    ("png:\n  compression: 4\n", "'png.compression' is 4; allowed: 0, 1, 2, 3"),
    ("png:\n  compression: null\n", "'png.compression'"),
    ("png:\n  compression: true\n", "'png.compression'"),
    ("doppler:\n  red_hue: [169, 200]\n", "'doppler'.*hues are 0..179"),
    ("doppler:\n  min_pixels: 0\n", "'doppler.min_pixels'"),
    ("mask:\n  regions: [{box: [0, 0, 1]}]\n", "'mask.regions'"),
    ("mask:\n  regions: [{box: [0, 0, 1, 1], unit: inches}]\n", "'mask.regions'"),
    ("mask:\n  lookahead_frames: 0\n", "'mask.lookahead_frames' must be >= 1"),
    ("mask:\n  changed_share: 0\n", "'mask.changed_share' must be > 0"),
    ("mask:\n  margin_px: -3\n", "'mask.margin_px'"),
    ("queue_size: 0\n", "'queue_size'"),
    ("metrics:\n  port: 70000\n", "'metrics.port' must be <= 65535"),
    ("analysis:\n  batch_size: 0\n", "'analysis.batch_size'"),
    ("output_dir: null\n", "'output_dir'"),
    ("output_dir: ''\n", "'output_dir' must be a path"),
])
def test_type_and_range_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        _config(tmp_path, text)


def test_accepted_values(tmp_path):
    s = _config(tmp_path, "settle_seconds: 3\npng:\n  compression: 3\n"
                          "pseudonym_key_file: null\nmask:\n  regions:\n"
                          "    - {box: [0, 0, 50, 20], unit: pixels}\n")
    assert s.settle_seconds == 3.0 and isinstance(s.settle_seconds, float)
    assert s.png.compression == 3
    assert s.mask.regions == (Region(0, 0, 50, 20, unit="pixels"),)
    assert s.mask.margin_px == 3  # the rest of a section keeps its defaults


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        _config(tmp_path, "a: [\n")
    with pytest.raises(ConfigError, match="mapping"):
        _config(tmp_path, "- just\n- a list\n")
    for empty in ("", "\n# only a comment\n", "---\n"):
        with pytest.raises(ConfigError, match="empty"):
            _config(tmp_path, empty)


def test_regions_only_method_needs_the_operator_to_accept_text_outside_the_boxes(tmp_path):
    with pytest.raises(ConfigError, match="allow_text_outside_regions"):
        _config(tmp_path, "mask:\n  method: regions\n")
    s = _config(tmp_path, "mask:\n  method: regions\n  allow_text_outside_regions: true\n")
    assert s.mask.method is MaskMethod.REGIONS


def test_live_update_applies_live_settings_and_names_the_others(tmp_path):
    old = Settings()
    new = _config(tmp_path, "settle_seconds: 9\nworkers: 3\nmask:\n  margin_px: 5\n")
    applied, restart = old.live_update(new)
    assert applied.settle_seconds == 9.0 and applied.mask.margin_px == 5
    assert applied.workers == old.workers and restart == ["workers"]
