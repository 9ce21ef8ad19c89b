"""`gunicorn wsgi:app` from the repository root. A bad configuration stops here with one
line naming the variable."""

from __future__ import annotations

import sys

from newsletter import create_app
from newsletter.cli.errors import infrastructure_error
from newsletter.config import ConfigError

# gunicorn boots a new worker for one that exits with any other status, several times a
# second and for good; on this one (its APP_LOAD_ERROR) it stops, and so does the service.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
except OSError as exc:  # the SQLite file's folder cannot be made, for one
    print(f"error: {infrastructure_error(exc)}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
