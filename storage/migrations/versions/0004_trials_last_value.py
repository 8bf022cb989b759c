"""The dashboard's reads of 100,000-trial studies served by columns and indexes.

* ``trials.last_value``: the study's first metric (its first objective) from the trial's newest
  report that carried a finite one, kept by ``add_reports``. The history and parameter plots show
  every pruned, paused, failed or running trial at that value; reading it from the row replaces a
  JSON extract per trial, or a lookup of its report at its last step. The upgrade fills it from
  each trial's reports as ``add_reports`` would have: the newest (by step, then as recorded) with
  a value of that metric.
* ``trial_params``: each trial's parameters, one row each, copied from ``trials.params`` (which
  stays the record) with the number indexed by (study, name, value, trial number) in both orders
  of the value, so the trial table sorts by a parameter without a JSON extract and a sort of
  every trial. The upgrade copies
  every trial's parameters.
* The (study_id, state) index of trials gains ``number``: a state's trials (the running ones, the
  waiting ones) come in number order from the index alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
from __future__ import annotations

import json
import math

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 5000


def _param_rows(trial_id: int, study_id: int, number: int, params: dict) -> list[dict]:
    # as storage._rdb.param_rows writes them (copied: a migration does not change with the code)
    out = []
    for name, v in params.items():
        num = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        out.append({"trial_id": trial_id, "study_id": study_id, "number": number, "name": str(name),
                    "value_num": num, "value_text": v if isinstance(v, str) else json.dumps(v)})
    return out


def upgrade() -> None:
    op.add_column("trials", sa.Column("last_value", sa.Float, nullable=True))
    op.drop_index("ix_trials_study_state", "trials")
    op.create_index("ix_trials_study_state_number", "trials", ["study_id", "state", "number"])
    params_table = op.create_table(
        "trial_params",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("study_id", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
        sa.Column("value_text", sa.Text, nullable=True),
    )
    studies = sa.table("studies", sa.column("id", sa.Integer), sa.column("metrics", sa.JSON))
    trials = sa.table("trials", sa.column("id", sa.Integer), sa.column("study_id", sa.Integer),
                      sa.column("number", sa.Integer), sa.column("params", sa.JSON),
                      sa.column("last_step", sa.Integer), sa.column("last_value", sa.Float))
    reports = sa.table("reports", sa.column("id", sa.Integer), sa.column("trial_id", sa.Integer),
                       sa.column("step", sa.Integer), sa.column("metrics", sa.JSON))
    conn = op.get_bind()
    for study_id, metrics in conn.execute(sa.select(studies.c.id, studies.c.metrics)).all():
        if not metrics:
            continue
        value = reports.c.metrics[str(metrics[0])].as_float()
        newest = (sa.select(value).where(reports.c.trial_id == trials.c.id, value.is_not(None))
                  .order_by(reports.c.step.desc(), reports.c.id.desc()).limit(1).scalar_subquery())
        conn.execute(sa.update(trials).where(trials.c.study_id == study_id, trials.c.last_step.is_not(None))
                     .values(last_value=newest))
    after = 0
    while True:  # in batches by id: a large study's parameters are never all in memory at once
        batch = conn.execute(sa.select(trials.c.id, trials.c.study_id, trials.c.number, trials.c.params)
                             .where(trials.c.id > after).order_by(trials.c.id).limit(_BATCH)).all()
        if not batch:
            break
        rows = [r for tid, sid, number, params in batch for r in _param_rows(tid, sid, number, dict(params or {}))]
        if rows:
            conn.execute(params_table.insert(), rows)
        after = batch[-1][0]
    op.create_index("ix_trial_params_num", "trial_params", ["study_id", "name", "value_num", "number"])
    op.create_index("ix_trial_params_num_desc", "trial_params",
                    ["study_id", "name", sa.text("value_num DESC"), "number"])


def downgrade() -> None:
    op.drop_index("ix_trial_params_num_desc", "trial_params")
    op.drop_index("ix_trial_params_num", "trial_params")
    op.drop_table("trial_params")
    op.drop_index("ix_trials_study_state_number", "trials")
    op.create_index("ix_trials_study_state", "trials", ["study_id", "state"])
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("last_value")
