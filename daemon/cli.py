"""The ``radiomicsd`` command line. Exit codes: 0 success, 1 some inputs failed, 2 usage/config.

Heavy modules (the daemon, TensorFlow, scikit-learn) are imported by the sub-command that needs
them, so ``radiomicsd anonymise`` starts fast and small.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radiomicsd.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from radiomicsd.daemon.settings import Settings

EXIT_OK, EXIT_USAGE = 0, 2

# OpenCV and FFmpeg print decoder chatter on stderr that may name stream contents; keep it quiet
# unless the operator sets these variables.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Parallelism comes from the workers (daemon/frames.py). OpenBLAS would start a spinning
# thread per core when numpy loads (measured: 3x the CPU time of 'import cv2' on 2 cores), and
# nothing on the anonymise path uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, help="YAML config file (default: embedded "
                   "defaults, see config.example.yml)")
    p.add_argument("--log-format", choices=("auto", "console", "json"),
                   help="log format (default: config logging.format)")
    p.add_argument("--debug", action="store_true",
                   help="log at debug level (still no input names or paths: see --show-paths)")
    p.add_argument("--show-paths", action="store_true",
                   help="debug only: show input names and paths in logs and console")


def build_parser(with_scone: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radiomicsd",
        description="De-identify echocardiography videos (lossless PNG frames under keyed "
                    "pseudonyms) and optionally run the RHD radiomics analysis.")
    from radiomicsd import version

    parser.add_argument("--version", action="version", version=f"radiomicsd {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = "watch the input folder and process every dropped video once (foreground)"
    p = sub.add_parser("watch", help=text, description=text + "; SIGTERM/SIGINT stop it, "
                       "SIGHUP re-reads the config file's live settings")
    _common(p)

    for name, text in (("anonymise", "de-identify every video under a folder, then exit"),
                       ("analyse", "run the RHD analysis on every video under a folder; write "
                                   "results only (one JSON per video and a CSV table)")):
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument("-i", "--input", type=Path, required=True, help="input file or folder "
                       "(walked recursively; what is a video is decided by content)")
        p.add_argument("-o", "--output", type=Path, required=True,
                       help="output folder (created if missing)")
        p.add_argument("--state", type=Path, help="state folder for the generated pseudonym key "
                       "(default: config state_dir)")
        p.add_argument("--select", choices=("doppler", "all"),
                       help="export only colour-Doppler videos (default, as the pilot) or all")
        p.add_argument("--workers", type=int, help="CPU-bound threads, one video each; idle "
                       "ones help encode the frames of the others (default: CPU count)")
        if name == "anonymise":
            p.add_argument("--shard", metavar="I/N", help="take only the inputs whose content "
                           "digest falls in shard I of N (0-based); auto/N takes I from "
                           "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
            p.add_argument("--analyse", action="store_true",
                           help="also write results.json beside the frames (analysis.enabled)")

    text = "print journal counts per state and recent failures"
    p = sub.add_parser("status", help=text, description=text + " (from the journal: "
                       "state_dir's SQLite file, or journal_url with its replicas)")
    _common(p)
    p.add_argument("--recent", type=int, default=10, help="how many recent failures to list")

    text = "inputs refused as needs_review: list, show a preview, approve or reject"
    p = sub.add_parser("review", help=text, description=text + " (in the config's quarantine "
                       "folder; approve pins the proposed mask and moves the input back into "
                       "the input folder, where it is exported with that mask, still OCR-checked)")
    _common(p)
    p.add_argument("action", choices=("list", "show", "approve", "reject"))
    p.add_argument("id", nargs="?", help="entry id (q-...), as 'review list' prints it")
    p.add_argument("--profile", metavar="NAME", help="approve: also write a device profile: "
                   "inputs of the same device and frame size get this mask")
    p.add_argument("--copy-to", type=Path, metavar="FILE",
                   help="show: write the preview PNG to FILE (0600) instead of naming it")

    text = "C-ECHO a DICOM node (a PACS, or radiomicsd's own SCP) to test connectivity"
    p = sub.add_parser("echo", help=text, description=text)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--ae-title", default="RADIOMICSD", help="calling AE title")
    p.add_argument("--called", default="ANY-SCP", help="called AE title")

    text = "validate a config file and print the merged result"
    p = sub.add_parser("check-config", help=text, description=text)
    _common(p)

    text = "write a new age identity for encrypted drops and print its recipient (age1...)"
    p = sub.add_parser("keygen", help=text, description=text)
    p.add_argument("--identity", type=Path, required=True, help="identity file to create (0600)")

    text = "refit the RHD logistic regression from a features CSV"
    p = sub.add_parser("train-rhd", help=text, description=text)
    p.add_argument("features", type=Path, help="CSV with the 57 feature columns and 'label'")
    p.add_argument("-o", "--output", type=Path, required=True, help="model JSON to write")

    text = "SCONE helpers (render-session)"
    p = sub.add_parser("scone", help=text, description=text)
    if with_scone:  # its options are only built when asked for: keeps start-up small
        scone_sub = p.add_subparsers(dest="scone_command", required=True,
                                     metavar="SCONE_COMMAND")
        text = "fill the CAS session template"
        p = scone_sub.add_parser("render-session", help=text, description=text)
        from radiomicsd import scone

        scone.add_arguments(p)
    return parser


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    from radiomicsd.daemon.logs import configure_logging
    from radiomicsd.daemon.settings import load_settings

    settings = load_settings(args.config, overrides)
    log = settings.logging
    show = getattr(args, "show_paths", False) or log.show_paths
    level = "debug" if getattr(args, "debug", False) else log.level
    configure_logging(getattr(args, "log_format", None) or log.format, level, show)
    return settings


def _batch(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"output_dir": str(args.output)}
    if args.state:
        overrides["state_dir"] = str(args.state)
    if args.select:
        overrides["select"] = args.select
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError("--workers must be at least 1")
        overrides["workers"] = args.workers
    if args.command == "analyse" or getattr(args, "analyse", False):
        overrides["analysis"] = {"enabled": True}
    settings = _load(args, overrides)
    if args.command == "analyse":
        from radiomicsd.daemon.analysis import run_analyse

        return run_analyse(settings, args.input)
    from radiomicsd.daemon.batch import run_batch

    factory = None
    if settings.analysis.enabled:
        from radiomicsd.daemon.analysis import analyser_factory

        factory = analyser_factory(settings.analysis)
    shard = None
    if getattr(args, "shard", None):
        from radiomicsd.daemon.shard import parse_shard

        shard = parse_shard(args.shard, os.environ)
    return run_batch(settings, args.input, analyser_factory=factory, shard=shard)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("anonymise", "analyse"):
        return _batch(args)
    if args.command == "watch":
        from radiomicsd.daemon.service import run_watch

        return run_watch(_load(args), args.config)
    if args.command == "status":
        from radiomicsd.daemon.status import print_status

        return print_status(_load(args), recent=args.recent)
    if args.command == "review":
        from radiomicsd.daemon import review

        return review.run(_load(args), args.action, args.id, profile=args.profile,
                          copy_to=args.copy_to, console=sys.stdout)
    if args.command == "echo":
        from radiomicsd.daemon.scp import echo

        print(echo(args.host, args.port, ae_title=args.ae_title, called=args.called))
        return EXIT_OK
    if args.command == "check-config":
        import yaml

        from radiomicsd.daemon.settings import to_mapping

        print(yaml.safe_dump(to_mapping(_load(args)), sort_keys=False), end="")
        return EXIT_OK
    if args.command == "keygen":
        from radiomicsd.daemon.keys import keygen

        try:
            print(keygen(args.identity))
        except FileExistsError:
            raise ConfigError("the identity file exists; refusing to overwrite it") from None
        return EXIT_OK
    if args.command == "train-rhd":
        from radiomicsd.pipeline.rhd.grade import fit_rhd_from_csv

        try:
            fit_rhd_from_csv(args.features).to_json(args.output)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot fit the RHD model: {exc}") from None
        print(f"wrote {args.output}")
        return EXIT_OK
    if args.command == "scone":
        from radiomicsd import scone

        return scone.run(args)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_scone="scone" in argv).parse_args(argv)
    # Journal, key, notes, quarantined inputs and outputs are private to the service account
    # whatever umask it was started with (files 0600, folders 0700).
    os.umask(0o077)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"radiomicsd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
