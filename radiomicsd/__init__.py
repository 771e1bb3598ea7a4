"""radiomicsd: confidential de-identification and radiomics of echocardiography recordings.

The package is laid out as the design card fixes it: the science in :mod:`radiomicsd.pipeline`
(folder ``pipeline/``), the daemon shell in :mod:`radiomicsd.daemon` (``daemon/``), the model
files in :mod:`radiomicsd.classifiers` (``classifiers/``). This folder holds only the package
root, the SCONE session tool (:mod:`radiomicsd.scone`) and the synthetic test data generators
(:mod:`radiomicsd.testing`).
"""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """The installed distribution's version (from the git tag it was built at)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("radiomicsd")
    except PackageNotFoundError:
        return "0+unknown"
