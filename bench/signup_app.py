"""The app bench/signup.py serves: the real app plus a hello-world baseline route.

The baseline is registered on the very same Flask app, so a request to it passes through the
same gunicorn workers, WSGI stack, before/after-request hooks (limiter, Babel, security
headers) and teardown as POST /subscribe. The ratio between the two then isolates what the
signup itself costs (validation, three inserts, a commit, the RQ enqueue, the page) from
the fixed cost of serving any request on this machine.
"""

from __future__ import annotations

from newsletter import create_app

HELLO_PATH = "/bench/hello"


def hello() -> str:
    return "hello"


app = create_app()
app.add_url_rule(HELLO_PATH, "bench_hello", hello)
