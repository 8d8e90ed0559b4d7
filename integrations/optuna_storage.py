"""Sweeps in optuna's own storage, so that `optuna-dashboard <url>` shows every sweep and its trials.

The storage is optuna's RDBStorage schema beside ours: in PostgreSQL the schema ``optuna`` of our database,
in SQLite the file ``optuna.db`` beside our database file (optuna keeps its own Alembic revision in a table
named as ours is, so the two cannot share a schema). A study per sweep window, named
``quantpoly-<taskId>-w<window>``.

Optuna writes a trial at a time (a transaction and several statements each: about 6 ms a trial here, more
than the trial's backtest), so trials are written in batches of rows instead: each table's rows of a batch in
one statement, a batch in one transaction, the tables as optuna's schema defines them (read from the
database). Writing is idempotent: trials whose number the study already holds are skipped.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json
from sqlalchemy.engine import make_url

STUDY_PREFIX = "quantpoly"
SCHEMA = "optuna"


def storage_url(database_url: str) -> str:
    """Optuna's storage for our database (a synchronous SQLAlchemy URL, as optuna-dashboard takes it)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "quantpoly.db")
        return f"sqlite:///{database.with_name('optuna.db')}"
    query = dict(url.query) | {"options": f"-csearch_path={SCHEMA}"}
    return url.set(drivername="postgresql+psycopg", query=query).render_as_string(hide_password=False)


def study_name(job_id: str, window: int) -> str:
    return f"{STUDY_PREFIX}-{job_id}-w{window}"


@dataclass(frozen=True)
class MirroredTrial:
    number: int
    state: str  # "COMPLETE" or "FAIL"
    params: dict[str, Any]  # the searched parameters' values
    value: float | None
    user_attrs: dict[str, Any]  # metrics, test metrics, violations: shown by the dashboard


class OptunaMirror:
    """Writes recorded trials into optuna's storage; one per process, its engine opened at first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._tables: dict[str, sa.Table] | None = None
        self._engine: sa.Engine | None = None

    def write(
        self, name: str, maximize: bool, distributions: dict[str, BaseDistribution], trials: list[MirroredTrial]
    ) -> int:
        """The trials the study lacks, in one transaction; how many were written."""
        engine, tables = self._opened()
        with engine.begin() as connection:
            study_id = self._study(connection, tables, name, maximize)
            held = set(
                connection.scalars(sa.select(tables["trials"].c.number).where(tables["trials"].c.study_id == study_id))
            )
            missing = [trial for trial in trials if trial.number not in held]
            if missing:
                self._insert(connection, tables, study_id, distributions, missing)
        return len(missing)

    def _opened(self) -> tuple[sa.Engine, dict[str, sa.Table]]:
        with self._lock:
            if self._engine is None or self._tables is None:
                if self._url.startswith("postgresql"):
                    _ensure_schema(self._url)
                # Optuna creates (or checks) its schema; its tables are then read as they are.
                storage = optuna.storages.RDBStorage(self._url)
                self._engine = storage.engine
                metadata = sa.MetaData()
                names = (
                    "studies",
                    "study_directions",
                    "trials",
                    "trial_params",
                    "trial_values",
                    "trial_user_attributes",
                )
                metadata.reflect(self._engine, only=names)
                self._tables = {name: metadata.tables[name] for name in names}
            return self._engine, self._tables

    @staticmethod
    def _study(connection: sa.Connection, tables: dict[str, sa.Table], name: str, maximize: bool) -> int:
        studies = tables["studies"]
        found = connection.scalar(sa.select(studies.c.study_id).where(studies.c.study_name == name))
        if found is not None:
            return int(found)
        study_id = connection.scalar(sa.insert(studies).values(study_name=name).returning(studies.c.study_id))
        direction = "MAXIMIZE" if maximize else "MINIMIZE"
        connection.execute(
            sa.insert(tables["study_directions"]).values(study_id=study_id, objective=0, direction=direction)
        )
        return int(study_id)

    @staticmethod
    def _insert(
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        study_id: int,
        distributions: dict[str, BaseDistribution],
        trials: list[MirroredTrial],
    ) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)  # optuna stores naive UTC
        rows = [
            {
                "number": t.number,
                "study_id": study_id,
                "state": t.state,
                "datetime_start": now,
                "datetime_complete": now,
            }
            for t in trials
        ]
        inserted = connection.execute(
            sa.insert(tables["trials"]).returning(tables["trials"].c.trial_id, sort_by_parameter_order=True), rows
        )
        ids = [row[0] for row in inserted]
        params, values, attrs = [], [], []
        for trial_id, trial in zip(ids, trials, strict=True):
            for name, value in trial.params.items():
                distribution = distributions[name]
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": distribution.to_internal_repr(value),
                        "distribution_json": distribution_to_json(distribution),
                    }
                )
            if trial.state == "COMPLETE" and trial.value is not None:
                values.append({"trial_id": trial_id, "objective": 0, **_value(trial.value)})
            attrs += [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in trial.user_attrs.items()
            ]
        for table, batch in (("trial_params", params), ("trial_values", values), ("trial_user_attributes", attrs)):
            if batch:
                connection.execute(sa.insert(tables[table]), batch)


def _value(value: float) -> dict[str, Any]:
    """A trial value as optuna stores it: infinities by type, not by value."""
    if math.isinf(value):
        return {"value": None, "value_type": "INF_POS" if value > 0 else "INF_NEG"}
    return {"value": value, "value_type": "FINITE"}


def _ensure_schema(url: str) -> None:
    admin = make_url(url).set(query={})
    engine = sa.create_engine(admin)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    finally:
        engine.dispose()


@functools.cache
def mirror_for(url: str) -> OptunaMirror:
    return OptunaMirror(url)
