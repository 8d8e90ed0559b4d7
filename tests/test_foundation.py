"""Migrations, settings, log redaction, workflow replay and the garbage collector of a serving process."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
from pathlib import Path

import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

import db.models  # noqa: F401
from core.logging import RedactingFilter, redact
from core.runtime import YOUNG_COLLECTION_THRESHOLD, frozen_startup_heap
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES
from db.base import Base
from db.engine import sync_url
from worker import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"


def test_migrations_match_the_models(database_url):
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_a_wrong_setting_stops_the_process_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"],
        env={"PATH": "/usr/bin:/bin", "QUANTPOLY_API_PORT": "eighty", "QUANTPOLY_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid configuration: QUANTPOLY_API_PORT:")


def test_redaction_of_every_secret_form():
    token = "Zq3xY8wPpL0kR2mN5vB7cD9fG1hJ4sT6uW8yA0eI3oU"
    samples = [
        f"Authorization: Bearer {token}",
        f'{{"password": "Hunter2Hunter2", "token": "{token}"}}',
        "{'newPassword': 'Hunter2Hunter2'}",
        f"POST /auth/verify?token={token}&x=1",
        f"cookie: session_token={token}",
        f"api_key={token} secret_key: {token}",
    ]
    for sample in samples:
        masked = redact(sample)
        assert token not in masked and "Hunter2Hunter2" not in masked, masked


def test_redaction_applies_to_arguments_and_tracebacks():
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "login with %s", ({"password": "Hunter2Hunter2"},), None
    )
    RedactingFilter().filter(record)
    assert "Hunter2Hunter2" not in record.getMessage()
    try:
        raise ValueError("token=abcdefgh12345678")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    RedactingFilter().filter(failed)
    assert "abcdefgh12345678" not in failed.exc_text


async def test_recorded_token_workflow_histories_replay():
    """Histories of real runs (tokens consumed and expired, jobs and backtests succeeded and failed, and of the
    later job and backtest types: completed, failed, cancelled, woken from a wait for a slot; BacktestWorkflowV2
    with two activities and, patched, with one) must replay: a change that would break workflows in flight
    fails here. The V2 job's and BacktestWorkflowV3's histories are written by tests/test_job_path.py when run
    with QUANTPOLY_RECORD_HISTORIES=1; the earlier ones are kept as recorded."""
    histories = [
        WorkflowHistory.from_json(path.stem, json.loads(path.read_text())) for path in sorted(HISTORIES.glob("*.json"))
    ]
    assert len(histories) >= 20
    replayer = Replayer(
        workflows=list(WORKFLOWS),  # every type the worker runs, earlier ones included
        data_converter=DATA_CONVERTER,
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{history.workflow_id}: {result.replay_failure}"


def test_missing_spans_finds_holes_and_edges():
    from datetime import UTC, datetime

    from domain.market import merge_spans, missing_spans

    def d(day: int) -> datetime:
        return datetime(2024, 1, day, tzinfo=UTC)

    covered = [(d(5), d(10)), (d(8), d(12)), (d(20), d(25))]
    assert merge_spans(covered) == [(d(5), d(12)), (d(20), d(25))]
    assert missing_spans((d(1), d(30)), covered) == [(d(1), d(5)), (d(12), d(20)), (d(25), d(30))]
    assert missing_spans((d(6), d(9)), covered) == []
    assert missing_spans((d(11), d(21)), covered) == [(d(12), d(20))]
    assert missing_spans((d(1), d(3)), []) == [(d(1), d(3))]


def test_the_dev_server_registers_every_search_attribute_the_code_sets():
    config = yaml.safe_load((Path(__file__).parent.parent / "temporal-dev.yaml").read_text())
    assert set(config["search_attributes"]) == {key.name for key in SEARCH_ATTRIBUTES}


def test_a_serving_process_freezes_its_startup_heap_and_restores_the_collector_after():
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with frozen_startup_heap():
        assert gc.get_freeze_count() > frozen
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *threshold[1:])
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
