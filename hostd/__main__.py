"""``python -m hostd``: run the host daemon (same options as ``orrery hostd``)."""

import sys

from hostd.cli import main

sys.exit(main())
