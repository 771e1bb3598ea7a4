"""One place per setting: its default, its validation and its doc, as dataclass field metadata.

Settings classes (here in ``pipeline`` and in ``radiomicsd.daemon.settings``) are frozen
dataclasses whose fields are made with :func:`setting`. The config loader reads the metadata to
validate a YAML value before the class is built (type, allowed choices, bounds); the class's
``__post_init__`` checks what spans several fields. ``config.example.yml`` is checked against the
same metadata by the tests.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(default: Any, doc: str, *, choices: tuple[Any, ...] = (), ge: float | None = None,
            gt: float | None = None, le: float | None = None, live: bool = False) -> Any:
    """A settings field.

    Parameters
    ----------
    default : the value with no config file; lists are given as tuples (frozen settings).
    doc : one line for ``config.example.yml`` and error messages.
    choices : allowed values, when the setting is an enumeration.
    ge, gt, le : numeric bounds (inclusive, exclusive, inclusive).
    live : a running daemon applies a change of this setting on SIGHUP.
    """
    meta = {"doc": doc, "choices": choices, "ge": ge, "gt": gt, "le": le, "live": live}
    return field(default=default, metadata=meta)
