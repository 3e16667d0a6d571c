"""solicitations, motif taxonomy, job runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:11:01.668630
"""

from alembic import op
import sqlalchemy as sa

import core.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=60), nullable=False),
    sa.Column('period', sa.String(length=40), nullable=False),
    sa.Column('started_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job', 'period', name=op.f('uq_job_runs_job'))
    )
    op.create_table('thematiques',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_thematiques')),
    sa.UniqueConstraint('key', name=op.f('uq_thematiques_key'))
    )
    op.create_table('motifs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thematique_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['thematique_id'], ['thematiques.id'], name=op.f('fk_motifs_thematique_id_thematiques')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_motifs')),
    sa.UniqueConstraint('thematique_id', 'key', name=op.f('uq_motifs_thematique_id'))
    )
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_motifs_thematique_id'), ['thematique_id'], unique=False)

    op.create_table('sous_motifs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('motif_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['motif_id'], ['motifs.id'], name=op.f('fk_sous_motifs_motif_id_motifs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sous_motifs')),
    sa.UniqueConstraint('motif_id', 'key', name=op.f('uq_sous_motifs_motif_id'))
    )
    with op.batch_alter_table('sous_motifs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sous_motifs_motif_id'), ['motif_id'], unique=False)

    op.create_table('solicitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('departement_code', sa.String(length=3), nullable=False),
    sa.Column('occurred_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.Enum('phone_svi', 'phone_direct', 'email', 'form', 'other', name='channel', native_enum=False, length=30), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('thematique_id', sa.Integer(), nullable=True),
    sa.Column('motif_id', sa.Integer(), nullable=True),
    sa.Column('sous_motif_id', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('resolved_first_level', sa.Boolean(), nullable=True),
    sa.Column('escalated', sa.Boolean(), nullable=True),
    sa.Column('source', sa.Enum('svi', 'manual', 'workbook', name='source', native_enum=False, length=30), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_solicitations_call_id_calls'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['departement_code'], ['departements.code'], name=op.f('fk_solicitations_departement_code_departements')),
    sa.ForeignKeyConstraint(['motif_id'], ['motifs.id'], name=op.f('fk_solicitations_motif_id_motifs')),
    sa.ForeignKeyConstraint(['sous_motif_id'], ['sous_motifs.id'], name=op.f('fk_solicitations_sous_motif_id_sous_motifs')),
    sa.ForeignKeyConstraint(['thematique_id'], ['thematiques.id'], name=op.f('fk_solicitations_thematique_id_thematiques')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_solicitations')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_solicitations_fingerprint')),
    sa.UniqueConstraint('reference', name=op.f('uq_solicitations_reference'))
    )
    with op.batch_alter_table('solicitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_solicitations_call_id'), ['call_id'], unique=False)
        batch_op.create_index('ix_solicitations_departement_occurred_at', ['departement_code', 'occurred_at'], unique=False)
        batch_op.create_index('ix_solicitations_occurred_at', ['occurred_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('solicitations', schema=None) as batch_op:
        batch_op.drop_index('ix_solicitations_occurred_at')
        batch_op.drop_index('ix_solicitations_departement_occurred_at')
        batch_op.drop_index(batch_op.f('ix_solicitations_call_id'))

    op.drop_table('solicitations')
    with op.batch_alter_table('sous_motifs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sous_motifs_motif_id'))

    op.drop_table('sous_motifs')
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_motifs_thematique_id'))

    op.drop_table('motifs')
    op.drop_table('thematiques')
    op.drop_table('job_runs')
