"""Configuration: YAML validated against the embedded defaults, with environment overrides.

``config.example.yml`` documents every key with its default; :data:`DEFAULTS` below is the same
tree and is what ``radiomicsd watch`` runs with when no file is given. Validation names the key
and the allowed values in its error message.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radiomicsd.pipeline.deid.mask import METHODS, MaskSettings, Region
from radiomicsd.pipeline.doppler import DopplerSettings
from radiomicsd.pipeline.errors import ConfigError
from radiomicsd.pipeline.png import DEFAULT_LEVEL as PNG_DEFAULT_LEVEL
from radiomicsd.pipeline.png import LEVELS as PNG_LEVELS
from radiomicsd.pipeline.video import Limits

DEFAULTS: dict[str, Any] = {
    "input_dir": "./input",
    "output_dir": "./output",
    "state_dir": "./state",
    "quarantine_dir": "./quarantine",
    "done_dir": "./done",
    "select": "doppler",
    "workers": 0,
    "queue_size": 64,
    "settle_seconds": 2.0,
    "rescan_seconds": 60.0,
    "observer": "auto",
    "ignore_patterns": [".*", "*.part", "*.tmp", "*.crdownload", "*~"],
    "journal_mode": "wal",
    "record_paths": False,
    "on_success": "keep",
    "on_input_error": "quarantine",
    "max_attempts": 5,
    "retry_base_seconds": 2.0,
    "shutdown_timeout": 30.0,
    "incomplete_grace_seconds": 30.0,
    "pseudonym_key_file": None,
    "limits": {"max_file_bytes": 8 * 2**30, "max_frame_pixels": 4096 * 4096,
               "max_frames": 100_000},
    "doppler": {"blue_hue": [110, 130], "red_hue": [169, 9], "min_saturation": 50,
                "min_value": 50, "min_pixels": 98},
    "mask": {"method": "auto+regions", "lookahead_frames": 16, "change_threshold": 6,
             "changed_share": 0.25, "margin_px": 3, "min_sector_fraction": 0.05,
             "regions": [{"box": [0.6667, 0.0, 1.0, 0.1667], "unit": "fraction"}]},
    "png": {"compression": PNG_DEFAULT_LEVEL},
    "analysis": {"enabled": False, "view_weights": None, "rhd_model": None,
                 "palette_frames": 8, "batch_size": 16, "view_every": 3,
                 "kmeans_restarts": 3},
    "metrics": {"enabled": True, "host": "127.0.0.1", "port": 9108},
    "logging": {"format": "auto", "level": "info", "show_paths": False},
    "enclave_mode": False,
    "require_attestation": False,
    "attestation_marker": "/run/radiomicsd/attested",
    "age": {"identity_file": None},
    "decrypt_tmp_dir": None,
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "select": ("doppler", "all"),
    "observer": ("auto", "inotify", "polling"),
    "journal_mode": ("wal", "delete", "truncate"),
    "on_success": ("keep", "delete", "move"),
    "on_input_error": ("quarantine", "leave"),
    "mask.method": METHODS,
    "logging.format": ("auto", "console", "json"),
    "logging.level": ("debug", "info", "warning", "error"),
}

NULLABLE = {"pseudonym_key_file", "analysis.view_weights",
            "analysis.rhd_model", "age.identity_file", "decrypt_tmp_dir"}

PSEUDONYM_KEY_ENV = "RADIOMICSD_PSEUDONYM_KEY"
AGE_IDENTITY_ENV = "RADIOMICSD_AGE_IDENTITY"
AGE_IDENTITY_FILE_ENV = "RADIOMICSD_AGE_IDENTITY_FILE"


def _merge(base: dict[str, Any], over: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Overlay ``over`` on a copy of ``base``, refusing unknown keys and wrong types."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown setting '{name}'; known: {', '.join(sorted(base))}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"'{name}' must be a mapping")
            out[key] = _merge(default, value, f"{name}.")
            continue
        if value is None and name in NULLABLE:
            out[key] = None
            continue
        if name in CHOICES and value not in CHOICES[name]:
            allowed = ", ".join(map(str, CHOICES[name]))
            raise ConfigError(f"'{name}' is {value!r}; allowed: {allowed}")
        expect = type(default) if default is not None else str
        if expect is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expect) or (expect is int and isinstance(value, bool)):
            raise ConfigError(f"'{name}' must be of type {expect.__name__}, got {value!r}")
        out[key] = value
    return out


@dataclass
class Config:
    """Validated settings; ``raw`` is the merged tree (defaults + file)."""

    raw: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def path(self, key: str) -> Path:
        return Path(self.raw[key]).expanduser()

    @property
    def workers(self) -> int:
        return self.raw["workers"] or os.cpu_count() or 1

    @property
    def limits(self) -> Limits:
        return Limits(**self.raw["limits"])

    @property
    def doppler(self) -> DopplerSettings:
        d = self.raw["doppler"]
        return DopplerSettings(tuple(d["blue_hue"]), tuple(d["red_hue"]), d["min_saturation"],
                               d["min_value"], d["min_pixels"])

    @property
    def mask(self) -> MaskSettings:
        m = dict(self.raw["mask"])
        regions = tuple(Region(*r["box"], unit=r.get("unit", "fraction")) for r in m.pop("regions"))
        return MaskSettings(regions=regions, **m)


def _check(raw: dict[str, Any]) -> None:
    checks = [
        (raw["queue_size"] >= 1, "'queue_size' must be at least 1"),
        (raw["workers"] >= 0, "'workers' must be 0 (CPU count) or more"),
        (raw["max_attempts"] >= 1, "'max_attempts' must be at least 1"),
        (raw["settle_seconds"] >= 0, "'settle_seconds' must be >= 0"),
        (raw["rescan_seconds"] > 0, "'rescan_seconds' must be > 0"),
        (raw["incomplete_grace_seconds"] >= 0, "'incomplete_grace_seconds' must be >= 0"),
        (raw["mask"]["lookahead_frames"] >= 1, "'mask.lookahead_frames' must be >= 1"),
        (0 <= raw["metrics"]["port"] < 65536, "'metrics.port' must be 0..65535"),
    ]
    checks.append((raw["png"]["compression"] in PNG_LEVELS, "'png.compression' must be 0..3"))
    for r in raw["mask"]["regions"]:
        ok = isinstance(r, dict) and len(r.get("box", ())) == 4
        ok = ok and r.get("unit", "fraction") in ("fraction", "pixels")
        checks.append((ok, "'mask.regions' entries need box: [x0, y0, x1, y1] and unit: "
                           "fraction | pixels"))
    for key in ("blue_hue", "red_hue"):
        hue = raw["doppler"][key]
        ok = len(hue) == 2 and all(isinstance(v, int) and 0 <= v <= 179 for v in hue)
        checks.append((ok, f"'doppler.{key}' must be [lo, hi] with hues 0..179"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config file (None = embedded defaults), then ``overrides``."""
    raw = copy.deepcopy(DEFAULTS)
    if path is not None:
        import yaml  # only when there is a file: the embedded defaults need no parser

        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("config file must hold a mapping of settings")
        raw = _merge(raw, data)
    if overrides:
        raw = _merge(raw, overrides)
    _check(raw)
    return Config(raw)
