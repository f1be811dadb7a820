"""batch record: specifications, donors, materials, equipment, lots, steps, vials, deviations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:07:39.478078
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('donor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('consent_date', sa.Date(), nullable=True),
    sa.Column('consent_reference', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('equipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('equipment_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('calibration_due', sa.Date(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('asset_id')
    )
    op.create_table('material_lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('material_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('supplier', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('supplier_lot', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('material_code', 'supplier_lot')
    )
    op.create_table('donation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('donor_id', sa.Integer(), nullable=False),
    sa.Column('identifier', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id_system', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('check_character', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
    sa.Column('donated_on', sa.Date(), nullable=False),
    sa.Column('eligibility', sa.String(length=16), nullable=False),
    sa.Column('eligibility_signature_id', sa.Integer(), nullable=True),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['donor_id'], ['donor.id'], ),
    sa.ForeignKeyConstraint(['eligibility_signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('identifier')
    )
    with op.batch_alter_table('donation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_donation_donor_id'), ['donor_id'], unique=False)

    op.create_table('spec_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('file_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('content', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('loaded_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('effective_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('signature_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('product_code', 'version')
    )
    op.create_table('donor_test',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('donation_id', sa.Integer(), nullable=False),
    sa.Column('test', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('result', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sample_date', sa.Date(), nullable=False),
    sa.Column('laboratory', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('recorded_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['donation_id'], ['donation.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('donation_id', 'test')
    )
    with op.batch_alter_table('donor_test', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_donor_test_donation_id'), ['donation_id'], unique=False)

    op.create_table('lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('spec_version_id', sa.Integer(), nullable=False),
    sa.Column('donation_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_before_hold', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('hold_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['donation_id'], ['donation.id'], ),
    sa.ForeignKeyConstraint(['spec_version_id'], ['spec_version.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_donation_id'), ['donation_id'], unique=False)

    op.create_table('deviation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('step_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('blinded_summary', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('impact_assessment', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('capa_reference', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('raised_by', sa.Integer(), nullable=True),
    sa.Column('raised_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('closure_signature_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['closure_signature_id'], ['signature.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['raised_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('deviation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deviation_lot_id'), ['lot_id'], unique=False)

    op.create_table('step_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('step_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('repeat_index', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('na_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('started_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('performed_by', sa.Integer(), nullable=True),
    sa.Column('performed_signature_id', sa.Integer(), nullable=True),
    sa.Column('verified_signature_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['performed_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['performed_signature_id'], ['signature.id'], ),
    sa.ForeignKeyConstraint(['verified_signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lot_id', 'step_code', 'repeat_index')
    )
    with op.batch_alter_table('step_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_entry_lot_id'), ['lot_id'], unique=False)

    op.create_table('vial',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('storage_position', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    sa.UniqueConstraint('lot_id', 'seq'),
    sa.UniqueConstraint('storage_position')
    )
    with op.batch_alter_table('vial', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vial_lot_id'), ['lot_id'], unique=False)

    op.create_table('equipment_use',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('equipment_id', sa.Integer(), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('recorded_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['step_entry.id'], ),
    sa.ForeignKeyConstraint(['equipment_id'], ['equipment.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('equipment_use', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_equipment_use_entry_id'), ['entry_id'], unique=False)

    op.create_table('material_use',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('material_lot_id', sa.Integer(), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('recorded_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['step_entry.id'], ),
    sa.ForeignKeyConstraint(['material_lot_id'], ['material_lot.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('material_use', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_material_use_entry_id'), ['entry_id'], unique=False)

    op.create_table('step_value',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('parameter_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('within_limits', sa.Boolean(), nullable=True),
    sa.Column('computed', sa.Boolean(), nullable=False),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('na_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('entered_by', sa.Integer(), nullable=False),
    sa.Column('entered_by_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entered_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('superseded_by', sa.Integer(), nullable=True),
    sa.Column('correction_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['entered_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['entry_id'], ['step_entry.id'], ),
    sa.ForeignKeyConstraint(['superseded_by'], ['step_value.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('step_value', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_value_entry_id'), ['entry_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('step_value', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_value_entry_id'))

    op.drop_table('step_value')
    with op.batch_alter_table('material_use', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_material_use_entry_id'))

    op.drop_table('material_use')
    with op.batch_alter_table('equipment_use', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_equipment_use_entry_id'))

    op.drop_table('equipment_use')
    with op.batch_alter_table('vial', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vial_lot_id'))

    op.drop_table('vial')
    with op.batch_alter_table('step_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_entry_lot_id'))

    op.drop_table('step_entry')
    with op.batch_alter_table('deviation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deviation_lot_id'))

    op.drop_table('deviation')
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_donation_id'))

    op.drop_table('lot')
    with op.batch_alter_table('donor_test', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_donor_test_donation_id'))

    op.drop_table('donor_test')
    op.drop_table('spec_version')
    with op.batch_alter_table('donation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_donation_donor_id'))

    op.drop_table('donation')
    op.drop_table('material_lot')
    op.drop_table('equipment')
    op.drop_table('donor')
