"""A job alert's search: radius, remote and job types for readers and digest variants;
postal code, coordinates, remote, job types and salary for listings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _search_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("radius", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("remote", sa.String(length=8), nullable=False, server_default="also"),
        sa.Column("employment_type", sa.String(length=120), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for column in _search_columns():
            batch_op.add_column(column)
    # A reader who gave a place before radius search existed gets the default radius, as a
    # new signup with a place does; radius 0 stays "no place".
    op.execute(sa.text("UPDATE subscribers SET radius = 25 WHERE location <> ''"))
    with op.batch_alter_table("edition_variants", schema=None) as batch_op:
        for column in _search_columns():
            batch_op.add_column(column)
        batch_op.drop_index("ix_edition_variants_match")
        batch_op.create_index(
            "ix_edition_variants_match",
            ["edition_id", "keywords", "location", "radius", "remote", "employment_type"], unique=False,
        )
    with op.batch_alter_table("listings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("postal_code", sa.String(length=10), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("remote", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("employment_type", sa.String(length=120), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("salary_min", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("salary_max", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("salary_currency", sa.String(length=3), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("salary_unit", sa.String(length=8), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("listings", schema=None) as batch_op:
        for name in ("salary_unit", "salary_currency", "salary_max", "salary_min", "employment_type", "remote",
                     "longitude", "latitude", "postal_code"):
            batch_op.drop_column(name)
    with op.batch_alter_table("edition_variants", schema=None) as batch_op:
        batch_op.drop_index("ix_edition_variants_match")
        batch_op.create_index("ix_edition_variants_match", ["edition_id", "keywords", "location"], unique=False)
        for name in ("employment_type", "remote", "radius"):
            batch_op.drop_column(name)
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for name in ("employment_type", "remote", "radius"):
            batch_op.drop_column(name)
