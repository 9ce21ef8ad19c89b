"""`gunicorn wsgi:app` from the repository root. A bad configuration stops here with one
line naming the variable."""

from __future__ import annotations

import sys

from newsletter import create_app
from newsletter.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
