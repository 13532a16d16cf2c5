"""``python -m oracle``: the same as ``sec-oracle``."""

from oracle.cli import main

raise SystemExit(main())
