"""Sharded batches: ``radiomicsd anonymise --shard I/N`` takes the inputs whose content digest
falls in shard I of N, so N processes (on N machines, or a Kubernetes Indexed Job's N pods)
split one input folder between them with no coordination but the folder itself.

Shard of a digest: the first 64 bits of its SHA-256, as an integer, modulo N: stable across runs,
machines and file names. Every shard reads every input once to fingerprint it (the price of
needing no coordinator); only its own are decoded. ``auto/N`` takes I from
``JOB_COMPLETION_INDEX``, which Kubernetes sets in each pod of an Indexed Job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from radiomicsd.pipeline.errors import ConfigError

INDEX_ENV = "JOB_COMPLETION_INDEX"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def owns(self, digest_hex: str) -> bool:
        """True when the content digest (hex) falls in this shard."""
        return int(digest_hex[:16], 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, env: Mapping[str, str]) -> Shard:
    """``I/N`` or ``auto/N`` (I from JOB_COMPLETION_INDEX); ConfigError otherwise."""
    match = re.fullmatch(r"(\d+|auto)/(\d+)", text.strip())
    if match is None:
        raise ConfigError("--shard is I/N or auto/N, e.g. 0/4")
    count = int(match.group(2))
    if match.group(1) == "auto":
        value = env.get(INDEX_ENV, "")
        if not value.isdigit():
            raise ConfigError(f"--shard auto/N needs {INDEX_ENV} (set in a Kubernetes "
                              "Indexed Job's pods)")
        index = int(value)
    else:
        index = int(match.group(1))
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: the index must be 0..{count - 1}")
    return Shard(index, count)
