"""Pending decisions get their own table.

Stops, pauses and PBT exploits decided for a running attempt used to be one JSON document under
the ``decisions`` key of ``algorithm_state`` ({trial id: {action, attempt, step, extra}}). They
become rows of ``pending_decisions`` (one per trial, an exploit's parent, step and params as
columns); the upgrade moves any decision left pending by an interrupted run, so ``search resume``
still carries it out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "pending_decisions",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("parent_step", sa.Integer, nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_pending_decisions_study_id", "pending_decisions", ["study_id"])
    state = sa.table("algorithm_state", sa.column("study_id", sa.Integer), sa.column("key", sa.String),
                     sa.column("value", sa.JSON))
    trials = sa.table("trials", sa.column("id", sa.Integer), sa.column("study_id", sa.Integer))
    conn = op.get_bind()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = []
    for study_id, doc in conn.execute(sa.select(state.c.study_id, state.c.value).where(state.c.key == "decisions")):
        for trial_id, d in (doc or {}).items():
            known = conn.execute(sa.select(trials.c.id).where(trials.c.id == int(trial_id),
                                                             trials.c.study_id == study_id)).first()
            if known is None:
                continue
            extra = d.get("extra") or {}
            rows.append({"trial_id": int(trial_id), "study_id": study_id, "attempt": int(d["attempt"]),
                         "step": int(d["step"]), "kind": d["action"], "reason": "",
                         "parent": None if extra.get("parent") is None else int(extra["parent"]),
                         "parent_step": None if extra.get("parent_step") is None else int(extra["parent_step"]),
                         "params": extra.get("params"), "created_at": now})
    if rows:
        op.bulk_insert(table, rows)
    conn.execute(sa.delete(state).where(state.c.key == "decisions"))


def downgrade() -> None:
    op.drop_index("ix_pending_decisions_study_id", "pending_decisions")
    op.drop_table("pending_decisions")
