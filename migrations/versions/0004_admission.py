"""admission: exam entry codes, invitations, the front door a session belongs to

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import proctor.schema
from proctor.codes import ENTRY_CODE_LENGTH, new_code


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

def upgrade() -> None:
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry_code', sa.String(length=16), nullable=True))
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('door', sa.String(length=8), nullable=True))

    op.create_table('invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exam_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', proctor.schema.UTCDateTime(), nullable=False),
    sa.Column('used_at', proctor.schema.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], name=op.f('fk_invitations_exam_id_exams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_invitations_code_hash')),
    sa.UniqueConstraint('exam_id', 'student_id', name='uq_invitations_exam_student')
    )

    # Existing exams get a code (the teacher reads it in the exam's detail); existing sessions
    # belong to the door they were joined through.
    conn = op.get_bind()
    for (exam_id,) in conn.execute(sa.text("SELECT id FROM exams")).all():
        conn.execute(sa.text("UPDATE exams SET entry_code = :code WHERE id = :id"),
                     {"code": new_code(ENTRY_CODE_LENGTH), "id": exam_id})
    conn.execute(sa.text(
        "UPDATE sessions SET door = CASE WHEN id IN (SELECT session_id FROM legacy_seats) "
        "THEN 'legacy' ELSE 'token' END"
    ))


def downgrade() -> None:
    op.drop_table('invitations')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('door')
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.drop_column('entry_code')
