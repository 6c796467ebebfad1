"""``python -m sessionfs``."""

from sessionfs.cli import main

raise SystemExit(main())
