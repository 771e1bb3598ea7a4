"""Settings: the YAML config file read once into frozen, typed settings.

Every setting is a field made with :func:`radiomicsd.pipeline.settings.setting` (default,
validation, doc in one place). Sections of the file are settings classes of their own, each
owned by the code that uses it: ``limits`` (:class:`~radiomicsd.pipeline.video.Limits`),
``doppler``, ``mask``, ``verify`` (``pipeline``), ``png``, ``analysis``, ``metrics``,
``logging``, ``age`` (here). The top level holds the folders and the daemon's own knobs.
``config.example.yml`` documents every key with its default and is checked against this schema
by the tests.

Secrets never come from this file: the pseudonym key and the age identity come from files it
names or from the environment (:mod:`radiomicsd.daemon.keys`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from radiomicsd.daemon.scp import ScpSettings
from radiomicsd.daemon.send import SendSettings
from radiomicsd.pipeline.deid.mask import MaskSettings
from radiomicsd.pipeline.deid.profile import ProfileSettings
from radiomicsd.pipeline.deid.verify import VerifySettings, check_engine
from radiomicsd.pipeline.doppler import DopplerSettings
from radiomicsd.pipeline.errors import ConfigError
from radiomicsd.pipeline.png import DEFAULT_LEVEL as PNG_DEFAULT_LEVEL
from radiomicsd.pipeline.png import LEVELS as PNG_LEVELS
from radiomicsd.pipeline.settings import setting
from radiomicsd.pipeline.video import Limits

PSEUDONYM_KEY_ENV = "RADIOMICSD_PSEUDONYM_KEY"
AGE_IDENTITY_ENV = "RADIOMICSD_AGE_IDENTITY"
AGE_IDENTITY_FILE_ENV = "RADIOMICSD_AGE_IDENTITY_FILE"


@dataclass(frozen=True)
class PngSettings:
    """How frames are written."""

    compression: int = setting(PNG_DEFAULT_LEVEL, "ISA-L deflate level over Sub-filtered rows",
                               choices=PNG_LEVELS, live=True)


@dataclass(frozen=True)
class AnalysisOptions:
    """The RHD analysis (needs the 'analysis' extra: TensorFlow, scikit-learn, scikit-image)."""

    enabled: bool = setting(False, "write results.json beside the frames of Doppler videos")
    view_weights: Path | None = setting(None, "Keras weights of the view CNN; null = shipped")
    rhd_model: Path | None = setting(None, "RHD logistic regression JSON; null = the pilot's")
    palette_frames: int = setting(8, "frames sampled to fit the Doppler colour palette", ge=1)
    batch_size: int = setting(16, "frames per CNN batch", ge=1)
    view_every: int = setting(3, "frames 0, k, 2k, ... vote on the view", ge=1)
    kmeans_restarts: int = setting(3, "extra k-means++ starts per frame", ge=0)


@dataclass(frozen=True)
class MetricsSettings:
    """/metrics (Prometheus) and /healthz."""

    enabled: bool = setting(True, "serve /metrics and /healthz")
    host: str = setting("127.0.0.1", "listen address: loopback unless you mean it")
    port: int = setting(9108, "0 = any free port (written to state_dir/metrics.port)", ge=0,
                        le=65535)


@dataclass(frozen=True)
class LoggingSettings:
    """Log lines on stderr."""

    format: str = setting("auto", "auto: console on a terminal, JSON otherwise",
                          choices=("auto", "console", "json"))
    level: str = setting("info", "lowest level logged",
                         choices=("debug", "info", "warning", "error"))
    show_paths: bool = setting(False, "debug only: log input names and paths")


@dataclass(frozen=True)
class AgeSettings:
    """Age-encrypted drops."""

    identity_file: Path | None = setting(None, "X25519 identity for *.age drops")


@dataclass(frozen=True)
class Settings:
    """Everything ``radiomicsd`` runs with; see ``config.example.yml`` for the docs."""

    input_dir: Path = setting(Path("./input"), "watched folder (recursive)")
    output_dir: Path = setting(Path("./output"), "OUT/<pseudonym>/ frames + manifest.json")
    state_dir: Path = setting(Path("./state"), "journal, generated key, metrics.port")
    quarantine_dir: Path = setting(Path("./quarantine"), "refused inputs with their notes")
    done_dir: Path = setting(Path("./done"), "inputs after success with on_success: move")
    select: str = setting("doppler", "doppler: only colour-Doppler videos | all",
                          choices=("doppler", "all"), live=True)
    workers: int = setting(0, "CPU-bound threads; 0 = number of CPUs", ge=0, le=1024)
    queue_size: int = setting(64, "bounded work queue", ge=1)
    settle_seconds: float = setting(2.0, "complete when size+mtime are unchanged this long",
                                    ge=0, live=True)
    rescan_seconds: float = setting(60.0, "periodic full rescan", gt=0, live=True)
    observer: str = setting("auto", "auto | inotify | polling",
                            choices=("auto", "inotify", "polling"))
    ignore_patterns: tuple[str, ...] = setting(
        (".*", "*.part", "*.tmp", "*.crdownload", "*~"),
        "names (of files and of folders) never taken", live=True)
    journal_mode: str = setting("wal", "SQLite journal mode",
                                choices=("wal", "delete", "truncate"))
    record_paths: bool = setting(False, "store input paths in journal and notes (privacy!)")
    journal_url: str | None = setting(None, "null: SQLite in state_dir | postgresql://user@"
                                      "host:port/db (replicas; no password in the URL)")
    journal_password_file: Path | None = setting(None, "file with the PostgreSQL password; "
                                                 "else $RADIOMICSD_JOURNAL_PASSWORD")
    journal_lease_seconds: float = setting(30.0, "a claim without a heartbeat this long is "
                                           "taken over by another replica", ge=3, le=3600)
    on_success: str = setting("keep", "input after its output is committed",
                              choices=("keep", "delete", "move"), live=True)
    on_input_error: str = setting("quarantine", "quarantine: move into quarantine_dir | leave",
                                  choices=("quarantine", "leave"), live=True)
    max_attempts: int = setting(5, "an input is tried at most this many times (transient "
                                "errors; starts cut short by a crash)", ge=1,
                                live=True)
    retry_base_seconds: float = setting(2.0, "backoff: base * 2^(attempt-1)", gt=0, live=True)
    shutdown_timeout: float = setting(30.0, "SIGTERM: seconds to finish in-flight videos", ge=0)
    incomplete_grace_seconds: float = setting(
        30.0, "a maybe-incomplete refusal is final after this long unchanged", ge=0)
    pseudonym_key_file: Path | None = setting(None, "file holding the pseudonym key")
    limits: Limits = setting(Limits(), "input limits (0 disables one)", live=True)
    doppler: DopplerSettings = setting(DopplerSettings(), "Doppler check", live=True)
    mask: MaskSettings = setting(MaskSettings(), "de-identification mask", live=True)
    verify: VerifySettings = setting(VerifySettings(), "OCR check of the masked frames before "
                                     "commit", live=True)
    output_format: str = setting("png", "png: PNG frames | dicom: one de-identified DICOM "
                                 "instance (image.dcm) | both", choices=("png", "dicom", "both"),
                                 live=True)
    dicom_scp: ScpSettings = setting(ScpSettings(), "DICOM Storage SCP of watch")
    send: SendSettings = setting(SendSettings(), "C-STORE of committed DICOM outputs (watch)")
    dicom_profile: ProfileSettings = setting(ProfileSettings(), "PS3.15 Annex E options of "
                                             "the DICOM output", live=True)
    png: PngSettings = setting(PngSettings(), "PNG frames", live=True)
    analysis: AnalysisOptions = setting(AnalysisOptions(), "RHD analysis")
    metrics: MetricsSettings = setting(MetricsSettings(), "monitoring")
    logging: LoggingSettings = setting(LoggingSettings(), "logs")
    enclave_mode: bool = setting(False, "threads only, polling observer, journal without mmap")
    require_attestation: bool = setting(False, "refuse to start unless attested")
    attestation_marker: Path = setting(Path("/run/radiomicsd/attested"),
                                       "file a CAS session injects on attested starts")
    age: AgeSettings = setting(AgeSettings(), "encrypted drops")
    decrypt_tmp_dir: Path | None = setting(None, "null: decrypt in memory | an ENCRYPTED folder")

    def __post_init__(self) -> None:
        if self.journal_url is not None:
            from radiomicsd.daemon.journal_pg import check_url

            try:
                check_url(self.journal_url, enclave=self.enclave_mode)
            except ConfigError as exc:
                raise ValueError(exc.detail) from None

    @property
    def worker_count(self) -> int:
        """``workers``, with 0 meaning the number of CPUs."""
        return self.workers or os.cpu_count() or 1

    def live_update(self, new: Settings) -> tuple[Settings, list[str]]:
        """These settings with ``new``'s live ones applied; also the changed keys that only a
        restart applies."""
        changes: dict[str, Any] = {}
        restart = []
        for f in dataclasses.fields(self):
            old, value = getattr(self, f.name), getattr(new, f.name)
            if f.metadata["live"]:
                changes[f.name] = value
            elif old != value:
                restart.append(f.name)
        return dataclasses.replace(self, **changes), restart


T = TypeVar("T")


#: Plain YAML scalars: (accepts, converts) per annotation; bool is not an int here.
_PLAIN: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any], str]] = {
    bool: (lambda v: isinstance(v, bool), lambda v: v, "bool"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), lambda v: v, "int"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v), float, "a finite number"),
    str: (lambda v: isinstance(v, str), lambda v: v, "str"),
    Path: (lambda v: isinstance(v, str) and v != "", lambda v: Path(v).expanduser(), "a path"),
}


def _scalar(tp: Any, value: Any, name: str) -> Any:
    """``value`` checked (and converted) against the annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _scalar(inner, value, name)
    if origin is tuple:
        return _sequence(args, value, name)
    if hasattr(tp, "from_mapping"):
        try:
            return tp.from_mapping(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"'{name}': {exc}") from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{name}' must be a mapping")
        return build(tp, value, prefix=f"{name}.")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if value is False and "off" in {m.value for m in tp}:
            value = "off"  # YAML 1.1 reads a bare off as false
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"'{name}' is {value!r}; allowed: {allowed}") from None
    accepts, convert, kind = _PLAIN[tp]
    if not accepts(value):
        raise ConfigError(f"'{name}' must be {kind}, got {value!r}")
    return convert(value)


def _sequence(args: tuple[Any, ...], value: Any, name: str) -> tuple[Any, ...]:
    """A YAML list as ``tuple[X, ...]`` or as a fixed-length ``tuple[X, Y]``."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"'{name}' must be a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_scalar(args[0], v, name) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"'{name}' must be a list of {len(args)} values")
    return tuple(_scalar(a, v, name) for a, v in zip(args, value))


def _bounded(f: dataclasses.Field[Any], value: Any, name: str) -> None:
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        allowed = ", ".join(map(str, meta["choices"]))
        raise ConfigError(f"'{name}' is {value!r}; allowed: {allowed}")
    for key, holds, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                             ("le", lambda v, b: v <= b, "<=")):
        bound = meta.get(key)
        if bound is not None and not holds(value, bound):
            raise ConfigError(f"'{name}' must be {word} {bound}, got {value!r}")


def build(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build settings class ``cls`` from a mapping, validating every value against its field.

    Unknown keys, wrong types, values out of bounds and inconsistent combinations raise
    :class:`ConfigError` naming the key (``prefix`` + field name) and what is allowed.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting '{prefix}{unknown[0]}'; known: "
                          f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        kwargs[key] = _scalar(hints[key], value, name)
        _bounded(fields[key], kwargs[key], name)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}': {exc}") from None


def to_mapping(settings: Any) -> Any:
    """Settings as plain YAML-able values (the form ``config.example.yml`` writes)."""
    if hasattr(settings, "to_mapping"):
        return settings.to_mapping()
    if dataclasses.is_dataclass(settings):
        return {f.name: to_mapping(getattr(settings, f.name))
                for f in dataclasses.fields(settings)}
    if isinstance(settings, enum.Enum):
        return settings.value
    if isinstance(settings, tuple):
        return [to_mapping(v) for v in settings]
    if isinstance(settings, Path):
        return str(settings)
    return settings


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base`` section by section (for command-line overrides)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; an empty or non-mapping file is an error."""
    import yaml  # only when there is a file: the embedded defaults need no parser

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file is not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError("config file is empty; give no -c to run with the defaults")
    if not isinstance(data, dict):
        raise ConfigError("config file must hold a mapping of settings")
    return data


def load_settings(path: Path | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from a YAML file (None: the embedded defaults), then ``overrides``."""
    data = read_config_file(path) if path is not None else {}
    if overrides:
        data = merge(data, overrides)
    return build(Settings, data)


def check_host(settings: Settings) -> None:
    """What the settings need of this host, checked before anything is written: Tesseract when
    ``verify.ocr`` is required (:class:`ConfigError`)."""
    check_engine(settings.verify)
