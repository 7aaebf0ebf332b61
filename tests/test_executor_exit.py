"""Exit is prompt: real child processes that return from main, or get SIGINT, while a create call
hangs; each must exit within 2 s and report the recovery it cut short."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tinker_recovery.journal import read_journal, resume_plan
from tinker_recovery.testing import FakeTinker

EXIT_BOUND_S = 2.0

PRELUDE = """
import sys, threading
import tinker_recovery as tr

hang = threading.Event()
entered = threading.Event()

class HangingService:
    def _hang(self, path, **kwargs):
        entered.set()
        hang.wait()  # never set: the create call hangs for ever

    create_training_client_from_state_with_optimizer = _hang
    create_training_client_from_state = _hang

def on(name):
    def receiver(sender, **payload):
        print(f"signal {name} {payload['run_id']} {payload.get('reason_class')}", flush=True)
    getattr(tr.signals, name).connect(receiver, weak=False)

for name in ("failed", "exhausted"):
    on(name)
"""

RETURN_FROM_MAIN = (
    PRELUDE
    + """
ex = tr.Executor(1).start()
future = ex.recover("run-1", HangingService(), tr.Policy(enabled=True),
                    last_checkpoint="tinker://run-1/weights/step-000010")
future.add_done_callback(lambda f: print(f"future {type(f.exception()).__name__}", flush=True))
assert entered.wait(10)
print("ready", flush=True)
# main returns without shutdown()
"""
)

SIGINT_DURING_WAIT = (
    PRELUDE
    + """
from tinker_recovery.testing import FakeTinker, LoopbackService

fake = FakeTinker(seed=1).start()
run_id = fake.add_run(checkpoints=1)
config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
ex = tr.Executor(1, config=config).start()
monitor = tr.Monitor(ex, tr.Policy(enabled=True, poll_interval_ms=100), config).start()
handle = monitor.monitor_run(run_id, HangingService())
fake.corrupt(run_id)
threading.Thread(target=lambda: (entered.wait(30), print("ready", flush=True)), daemon=True).start()
try:
    handle.wait_for_recovery()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""
)


def run_child(script: str, *, interrupt: bool) -> tuple[float, str, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:  # bounded by pytest-timeout; "ready" comes within seconds
            lines.append(line)
            if line.strip() == "ready":
                break
        else:
            raise AssertionError(
                f"child never got ready: {lines} {child.stderr.read() if child.stderr else ''}"
            )
        began = time.monotonic()
        if interrupt:
            child.send_signal(signal.SIGINT)
        # read the rest through the same buffered file (communicate() would read the pipe itself and
        # lose lines already buffered with "ready"); EOF comes when the child exits
        out = child.stdout.read()
        code = child.wait(timeout=10)
        elapsed = time.monotonic() - began
        return elapsed, "".join(lines) + out, code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


@pytest.mark.timeout(60)
def test_returning_from_main_with_a_hung_create_call_exits_promptly():
    elapsed, out, code = run_child(RETURN_FROM_MAIN, interrupt=False)
    print(f"exit after return from main: {elapsed:.3f} s")
    assert elapsed < EXIT_BOUND_S, (elapsed, out)
    assert code == 0
    assert "signal failed run-1 shutdown" in out and "signal exhausted run-1 shutdown" in out
    assert "future Shutdown" in out


@pytest.mark.timeout(60)
def test_sigint_during_wait_for_recovery_with_a_hung_create_call_exits_promptly():
    elapsed, out, code = run_child(SIGINT_DURING_WAIT, interrupt=True)
    print(f"exit after SIGINT: {elapsed:.3f} s")
    assert elapsed < EXIT_BOUND_S, (elapsed, out)
    assert code != 0 and "interrupted" in out
    assert "signal exhausted" in out and "shutdown" in out


JOURNALED = (
    PRELUDE
    + """
from tinker_recovery.journal import Journal

base_url, key, run_id, path, how = {args!r}
config = tr.Config(api_key=key, base_url=base_url, timeout_s=5.0, max_retries=0)
ex = tr.Executor(1, config=config).start()
monitor = tr.Monitor(ex, tr.Policy(enabled=True, poll_interval_ms=100), config, journal=Journal(path),
                     service=HangingService()).start()
handle = monitor.monitor_run(run_id, HangingService())
if how == "sigint":
    threading.Thread(target=lambda: (entered.wait(30), print("ready", flush=True)), daemon=True).start()
    handle.wait_for_recovery()
else:
    assert entered.wait(30)
    print("ready", flush=True)
    # main returns: neither monitor.stop() nor ex.shutdown()
"""
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["return", "sigint"])
def test_a_recovery_cut_short_at_exit_is_journaled_and_resumed_by_the_next_watcher(tmp_path, how):
    # Issue 11.3: a recovery cut short at exit is reported (failed/exhausted with Shutdown) and
    # journaled, not silently lost: the next watcher's plan resumes it with its recovery id.
    path = tmp_path / "journal.jsonl"
    with FakeTinker(seed=2) as fake:
        run_id = fake.add_run(checkpoints=1)
        fake.corrupt(run_id)
        script = JOURNALED.replace("{args!r}", repr((fake.base_url, fake.api_key, run_id, str(path), how)))
        elapsed, out, code = run_child(script, interrupt=how == "sigint")
    assert elapsed < EXIT_BOUND_S, (elapsed, out)
    assert (code == 0) == (how == "return"), (code, out)
    assert f"signal exhausted {run_id} shutdown" in out
    entries = [entry for entry in read_journal(path) if entry["run_id"] == run_id]
    events = [entry["event"] for entry in entries]
    assert "started" in events and events[-2:] == ["failed", "exhausted"], events
    assert entries[-1]["reason_class"] == "shutdown"
    started = next(entry for entry in entries if entry["event"] == "started")
    (item,) = [item for item in resume_plan(read_journal(path)) if item.lineage_id == run_id]
    assert item.run_id == run_id and item.pending_recovery_id == started["recovery_id"]
