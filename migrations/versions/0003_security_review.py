"""API token scopes, the confirmation budget per mailbox, preferences held until confirmed,
and the start of a pending period.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tokens made before scopes existed keep doing what they did: both scopes.
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=100), nullable=False, server_default="listings editions")
        )
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_since", sa.DateTime(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
    op.create_table(
        "confirmation_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_hash", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmation_mails")),
    )
    with op.batch_alter_table("confirmation_mails", schema=None) as batch_op:
        batch_op.create_index("ix_confirmation_mails_mailbox", ["mailbox_hash", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("confirmation_mails", schema=None) as batch_op:
        batch_op.drop_index("ix_confirmation_mails_mailbox")
    op.drop_table("confirmation_mails")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("payload")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("pending_since")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("scopes")
