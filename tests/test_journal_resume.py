"""A restarted watcher resumes from its journal: budgets kept, user stops kept, over real HTTP.

These run against the redesigned Monitor (``monitor_run(..., lineage_id=, pending_recovery_id=)``,
a journal-like ``journal=``) and Executor (``seed_budget``); with older ones they are skipped.
"""

from __future__ import annotations

import contextlib
import inspect

import pytest

import tinker_recovery as tr
from tinker_recovery.journal import Journal, ResumeItem, read_journal, resume_plan
from tinker_recovery.testing import FakeTinker, LoopbackService

pytestmark = pytest.mark.skipif(
    "lineage_id" not in inspect.signature(tr.Monitor.monitor_run).parameters
    or not hasattr(tr.Executor, "seed_budget"),
    reason="needs the redesigned Monitor and Executor (journal attach)",
)


@pytest.fixture
def fake():
    with FakeTinker(seed=3) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


@pytest.fixture
def service(fake):
    svc = LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0)
    yield svc
    svc.close()


def policy(**overrides):
    return tr.Policy(
        **{
            "enabled": True,
            "jitter": "none",
            "poll_interval_ms": 100,
            "backoff_ms": 10,
            "max_backoff_ms": 100,
            **overrides,
        }
    )


@contextlib.contextmanager
def watcher(config, service, journal, **overrides):
    """An Executor and a Monitor on ``journal``, stopped at the end: one run of a watching process."""
    with (
        tr.Executor(1, config=config) as executor,
        tr.Monitor(executor, policy(**overrides), config, journal=journal, service=service) as monitor,
    ):
        yield monitor


def test_a_restart_keeps_the_restart_budget_and_the_head_of_the_lineage(fake, config, service, tmp_path):
    path = tmp_path / "journal.jsonl"
    run_id = fake.add_run(checkpoints=1)
    with watcher(config, service, Journal(path), max_recoveries=1) as monitor:
        handle = monitor.monitor_run(run_id, service)
        fake.corrupt(run_id)
        recovery = handle.wait_for_recovery(timeout=20)
    new_run = recovery.new_run_id
    assert new_run is not None
    [item] = resume_plan(read_journal(path))
    assert item.run_id == new_run and item.lineage_id == run_id and len(item.restarts) == 1
    assert item.pending_recovery_id is None

    # the watcher restarts; the restored run reads corrupted: the budget (1) is spent
    fake.corrupt(new_run)
    with watcher(config, service, Journal(path), max_recoveries=1) as again:
        resumed = again.handle(new_run)
        assert resumed is not None
        with pytest.raises(tr.BudgetExhausted):
            resumed.wait_for_recovery(timeout=20)
    assert fake.load_weights_count(new_run) == 0  # not restored a second time
    assert resume_plan(read_journal(path)) == []  # given up: a third start resumes nothing


def test_a_user_stop_is_kept_across_a_restart(fake, config, service, tmp_path):
    path = tmp_path / "journal.jsonl"
    kept, stopped = fake.add_run(), fake.add_run()
    with watcher(config, service, Journal(path)) as monitor:
        monitor.monitor_run(kept, service)
        monitor.monitor_run(stopped, service).stop()
    assert resume_plan(read_journal(path)) == [ResumeItem(kept, kept)]
    with watcher(config, service, str(path)) as again:
        assert again.watched == [kept]
