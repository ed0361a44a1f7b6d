"""staff: the exam office's accounts for the console

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import proctor.schema


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('created_at', proctor.schema.UTCDateTime(), nullable=False),
    sa.Column('last_sign_in_at', proctor.schema.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('username', name=op.f('uq_staff_username'))
    )


def downgrade() -> None:
    op.drop_table('staff')
