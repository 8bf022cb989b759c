"""SQLAlchemy ORM models. Private to ``storage``: callers get frozen records from ``records``."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, desc)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX = 128


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True, nullable=False)
    directions: Mapped[list] = mapped_column(JSON, nullable=False)
    metrics: Mapped[list] = mapped_column(JSON, nullable=False)
    spec: Mapped[dict] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        # number last: a state's trials come in number order from the index (the running and
        # waiting ones of a 100,000-trial study without a pass over the others)
        Index("ix_trials_study_state_number", "study_id", "state", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    params: Mapped[dict] = mapped_column(JSON, nullable=False)
    # Objective values, one per objective, in the study's order (NULL until the trial completes).
    values: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # First objective, duplicated in a column so "best trial" is an indexed ORDER BY, not a JSON scan.
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict] = mapped_column(JSON, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    node: Mapped[str | None] = mapped_column(String(256), nullable=True)
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The study's first metric in the trial's newest report that carried a finite one, kept by
    # ``add_reports``: where a pruned, paused or running trial stands, read from the row instead
    # of the trial's reports or a JSON document (the dashboard plots it for every trial).
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class TrialParamRow(Base):
    """One parameter of one trial: a copy of ``trials.params``, which stays the record, written by
    ``storage`` wherever it writes those (a new trial, a PBT exploit). The trial table sorts by a
    parameter through it: ``value_num`` (a number, not a boolean) is indexed in trial number order
    within each study and name, so a page of 100,000 trials sorted by ``lr`` is an index walk,
    not a JSON extract and sort of every trial; ``value_text`` (a string as it is, any other value
    as JSON) orders a categorical one. Filters keep extracting from ``trials.params``: one pass
    over a study's rows measured faster than joining this table."""

    __tablename__ = "trial_params"
    # Both orders of the value with ties by trial number, as the table shows them: one index
    # walked backwards would give the ties in descending number.
    __table_args__ = (Index("ix_trial_params_num", "study_id", "name", "value_num", "number"),
                      Index("ix_trial_params_num_desc", "study_id", "name", desc("value_num"), "number"))

    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    study_id: Mapped[int] = mapped_column(Integer, nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_text: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReportRow(Base):
    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_trial_step", "trial_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    metrics: Mapped[dict] = mapped_column(JSON, nullable=False)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_trial_step", "trial_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    checksum: Mapped[str] = mapped_column(String(80), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class ExploitRow(Base):
    """One PBT exploit: member ``number`` restarted from ``parent_number``'s checkpoint at
    ``parent_step`` with ``params_after`` (it had ``params_before`` and was at ``step``)."""

    __tablename__ = "exploits"
    __table_args__ = (Index("ix_exploits_study", "study_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), nullable=False)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    parent_number: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    parent_step: Mapped[int] = mapped_column(Integer, nullable=False)
    params_before: Mapped[dict] = mapped_column(JSON, nullable=False)
    params_after: Mapped[dict] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class AlgorithmStateRow(Base):
    """Typed algorithm state that must survive a restart: one JSON document per (study, key)."""

    __tablename__ = "algorithm_state"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class PendingDecisionRow(Base):
    """A stop, pause or exploit decided for a running attempt and not yet carried out: at most one
    per trial, dropped once that attempt has ended. An exploit's parent, step and params are
    columns, so the table says what the decision is without a document to parse."""

    __tablename__ = "pending_decisions"

    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), nullable=False, index=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    params: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
