"""Bounces, complaints and mailto unsubscribes read back from the bounce mailbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("edition_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_bounce_events_subscriber_id_subscribers")),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], ondelete="SET NULL",
                                name=op.f("fk_bounce_events_edition_id_editions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_events")),
    )
    with op.batch_alter_table("bounce_events", schema=None) as batch_op:
        batch_op.create_index("ix_bounce_events_subscriber", ["subscriber_id", "kind", "edition_id"], unique=False)
        batch_op.create_index("ix_bounce_events_edition", ["edition_id", "kind"], unique=False)
    op.create_table(
        "returned_mails",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_returned_mails")),
    )


def downgrade() -> None:
    op.drop_table("returned_mails")
    with op.batch_alter_table("bounce_events", schema=None) as batch_op:
        batch_op.drop_index("ix_bounce_events_edition")
        batch_op.drop_index("ix_bounce_events_subscriber")
    op.drop_table("bounce_events")
