"""One attempt at one input, the same for the batch command and the daemon:
open -> (the caller's claim of the content digest) -> export -> :class:`Outcome`.

:func:`attempt` holds the one except-ladder: every way an attempt can end becomes an Outcome
with a stable reason code, so callers apply their policy (count, retry, quarantine, pause) to a
value, never to an exception. :func:`log_outcome` writes the one canonical log line per attempt.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

from radiomicsd.daemon.beneath import InputRoot
from radiomicsd.daemon.export import Cancelled, Exporter, Outcome, Status
from radiomicsd.daemon.logs import get_logger, path_fields
from radiomicsd.daemon.shard import Shard
from radiomicsd.daemon.sources import open_input
from radiomicsd.pipeline.errors import OutputUnavailable, RadiomicsError

log = get_logger("radiomicsd.video")


class Claim(Protocol):
    """Claims a content digest before export: False when it is done or in work already."""

    def __call__(self, digest: str, pseudonym: str) -> bool: ...


def attempt(exporter: Exporter, path: Path, *, root: InputRoot | None = None,
            age_identity: object | None = None, decrypt_tmp_dir: Path | None = None,
            claim: Claim | None = None, cancel: threading.Event | None = None,
            shard: Shard | None = None) -> Outcome:
    """Open ``path`` beneath ``root`` (the input folder: no symlink at any depth), skip it when
    its digest is another ``shard``'s, let ``claim`` take its digest, export it; never raises
    for one input.

    The call holds one of the exporter's CPU slots for its whole duration (idle slots help to
    encode its frames).
    """
    started = time.monotonic()
    slots = exporter.slots
    with slots.held() if slots is not None else nullcontext():
        try:
            # the digest comes first where a claim or a shard needs it; otherwise it is
            # computed while the input is decoded (the exporter asks for it before staging)
            early = claim is not None or shard is not None
            opened = open_input(path, exporter.limits.max_file_bytes, age_identity,
                                decrypt_tmp_dir, root=root, defer_digest=not early)
            try:
                name = exporter.pseudonym(opened) if early else None
                log.debug("video.opened", pseudonym=name, bytes=opened.size,
                          encrypted=opened.encrypted)
                if shard is not None and not shard.owns(opened.digest.hex()):
                    return Outcome(Status.SKIPPED, "other_shard", name, opened.digest.hex())
                if claim is not None and not claim(opened.digest.hex(), name or ""):
                    return Outcome(Status.SKIPPED, "duplicate", name, opened.digest.hex())
                return exporter.export(opened, name, started=started, cancel=cancel)
            finally:
                opened.close()
        except Cancelled:
            return Outcome(Status.ABANDONED, "cancelled")
        except RadiomicsError as exc:
            review = getattr(exc, "review", None)
            return Outcome(Status.FAILED, exc.reason, detail=exc.detail,
                           transient=exc.transient,
                           output_side=isinstance(exc, OutputUnavailable),
                           seconds=time.monotonic() - started,
                           extra={} if review is None else {"review": review})
        except FileNotFoundError:
            return Outcome(Status.FAILED, "vanished", seconds=time.monotonic() - started)
        except Exception as exc:  # a bug in one video must not stop the run
            return Outcome(Status.FAILED, "internal_error", detail=type(exc).__name__,
                           seconds=time.monotonic() - started)


def log_outcome(outcome: Outcome, *, action: str, path: Path, **extra: Any) -> None:
    """The one log line of an attempt: ``video.<action>`` (done, skipped, failed, quarantined,
    retry, suspect, paused, abandoned...), with reason, pseudonym, frames and time; the input's
    path only when the operator asked for paths."""
    fields: dict[str, Any] = {"reason": outcome.reason, "pseudonym": outcome.pseudonym}
    if outcome.detail:
        fields["detail"] = outcome.detail
    if outcome.status is Status.DONE:
        fields.update(frames=outcome.frames, seconds=round(outcome.seconds, 3))
    fields.update(extra)
    level = "info"
    if outcome.status is Status.FAILED:
        level = "error" if outcome.reason == "internal_error" else "warning"
    getattr(log, level)(f"video.{action}", **fields, **path_fields(path))
