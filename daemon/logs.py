"""Logging through structlog: a human console on a terminal, JSON lines otherwise.

Privacy rule: input names and paths are only logged through :func:`path_fields`, which returns
nothing unless the operator asked for them (``logging.show_paths`` or ``--show-paths``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any


def _import_structlog() -> Any:
    """Import structlog with its optional ``rich`` integration switched off.

    Whenever ``rich`` is importable (keras installs it with the analysis extra), structlog's
    console renders exceptions with rich, *local variables included*, and local variables may
    hold input paths. Hiding rich while structlog imports keeps plain tracebacks and saves ~60 ms
    of every command's start-up; rich stays importable for everything else (keras).
    """
    hide = "rich" not in sys.modules
    if hide:
        sys.modules["rich"] = None  # type: ignore[assignment]  # makes 'import rich' fail
    try:
        import structlog
    finally:
        if hide:
            del sys.modules["rich"]
    return structlog


structlog = _import_structlog()
_show_paths = False


def configure_logging(fmt: str = "auto", level: str = "info", show_paths: bool = False,
                      stream: Any = None) -> None:
    """Configure structlog once per process; ``fmt`` is auto | console | json."""
    global _show_paths
    _show_paths = show_paths
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty(),
                                                   exception_formatter=structlog.dev.plain_traceback)
                     if fmt == "console" else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def path_fields(path: str | Path) -> dict[str, str]:
    """``{"path": ...}`` only when paths may be shown, else ``{}``."""
    if not _show_paths:
        return {}
    from radiomicsd.daemon.beneath import path_text  # valid Unicode for any file name

    return {"path": path_text(path)}


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
