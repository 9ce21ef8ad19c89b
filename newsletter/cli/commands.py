"""The `newsletter` command group: a Flask CLI group (Flask's own `run`, `shell` and
`routes` included) holding every command. Each command is defined once, in the module of
the capability it operates:

    processes.py    db upgrade, worker, scheduler, demo
    subscribers.py  subscribers import, stats, purge
    listings.py     listings import
    digest.py       digest send, tick, status, pause, resume, cancel
    operators.py    api-token create, list, revoke
    admin.py        admin create-user, set-password, disable, list
    bounces.py      bounces process
    deliverability.py  dns-records, doctor

console.main runs this group, but for the worker and the scheduler, which it runs without
Flask (processes.FLASK_FREE)."""

from __future__ import annotations

from flask.cli import FlaskGroup, ScriptInfo

from newsletter import create_app
from newsletter.cli import admin, bounces, digest, listings, operators, processes, subscribers
from newsletter.cli import deliverability
from newsletter.cli.errors import run_group
from newsletter.config import Settings

cli = FlaskGroup(
    name="newsletter",
    create_app=create_app,
    add_default_commands=True,
    load_dotenv=False,
    set_debug_flag=False,
    help="The jobs newsletter: subscribers, listings, digests, workers.",
)
for command in (
    processes.db_group, processes.worker_command, processes.scheduler_command, processes.demo_command,
    subscribers.group, listings.group, digest.group, operators.api_token, bounces.group,
):
    cli.add_command(command)
cli.add_command(deliverability.dns_records_command)
cli.add_command(deliverability.doctor_command)
cli.add_command(admin.group)


def run(settings: Settings, args: list[str]) -> None:
    """Run the command group on validated settings: its commands find them, and the app
    built from them, through ScriptInfo (cli/context.py)."""
    info = ScriptInfo(create_app=lambda: create_app(settings), set_debug_flag=False, load_dotenv_defaults=False)
    run_group(cli, args, obj=info)
