"""Initial schema: stage completions and quiz results.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "completions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(255), nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quiz_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tutor_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("user", "course_id", "stage", name="uq_completion_user_course_stage"),
    )
    op.create_index("ix_completions_user_course", "completions", ["user", "course_id"])
    op.create_table(
        "quiz_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(255), nullable=False),
        sa.Column("quiz_id", sa.String(255), nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("passed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user", "course_id", "quiz_id", name="uq_quiz_user_course_quiz"),
    )
    op.create_index("ix_quiz_results_user_course", "quiz_results", ["user", "course_id"])


def downgrade() -> None:
    op.drop_table("quiz_results")
    op.drop_table("completions")
