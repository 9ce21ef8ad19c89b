"""Link mails counted per mailbox, and a generation for a reader's lasting links.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Links mailed on anyone's request (/manage, the data-link button), by mailbox: the
    # budget holds across every spelling of one inbox, as confirmation_mails does.
    op.create_table(
        "link_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_hash", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_mails")),
    )
    with op.batch_alter_table("link_mails", schema=None) as batch_op:
        batch_op.create_index("ix_link_mails_mailbox", ["mailbox_hash", "sent_at"], unique=False)
    # Preferences and data links name it: a new subscription after an unsubscribe raises
    # it, so links mailed to the former one open nothing of the new one.
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("link_generation")
    with op.batch_alter_table("link_mails", schema=None) as batch_op:
        batch_op.drop_index("ix_link_mails_mailbox")
    op.drop_table("link_mails")
