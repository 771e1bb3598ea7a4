"""``python -m radiomicsd``: the same command line as the ``radiomicsd`` console script."""

import sys

from radiomicsd.daemon.cli import main

sys.exit(main())
