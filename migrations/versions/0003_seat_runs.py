"""seat runs: segments numbered per run, runs of a seat, the upload grace after an exam's end,
recordings merged again

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import proctor.schema


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The new unique key starts with session_id as the old one did, so MariaDB's foreign key on
    # session_id always has an index to use: create it before dropping the old one.
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_unique_constraint('uq_segments_session_run_seq', ['session_id', 'run', 'seq'])
        batch_op.drop_constraint('uq_segments_session_seq', type_='unique')

    op.create_table('seat_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('run', sa.Integer(), nullable=False),
    sa.Column('started_at', proctor.schema.UTCDateTime(), nullable=False),
    sa.Column('client_addr', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_seat_runs_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seat_runs')),
    sa.UniqueConstraint('session_id', 'run', name='uq_seat_runs_session_run')
    )

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closes_at', proctor.schema.UTCDateTime(), nullable=True))

    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merges', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))

    with op.batch_alter_table('legacy_seats', schema=None) as batch_op:
        batch_op.drop_column('seq_offset')


def downgrade() -> None:
    with op.batch_alter_table('legacy_seats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq_offset', sa.Integer(), nullable=True))
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('merges')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('closes_at')
    op.drop_table('seat_runs')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_segments_session_seq', ['session_id', 'seq'])
        batch_op.drop_constraint('uq_segments_session_run_seq', type_='unique')
        batch_op.drop_column('run')
