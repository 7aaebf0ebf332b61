"""End to end: a cookbook-style supervised program (examples/cookbook_style_sl.py, the official tinker SDK's
asyncio calls) run under ``tinker-recovery run`` against a FakeTinker, corrupted mid-run, stopped, resumed
from its checkpoint log and run to the end. Real child processes (the supervisor and the program); the
test waits on their output lines, never sleeps.

Each test checks that no batch is lost and which batches are repeated: every loss of both launches must
equal the loss of one uninterrupted reference run fed exactly the batches the two launches ran, in order.
In supervised training the record ``00000b`` is written when batch b is finished, after batch b + 1
(``submit_ahead=1``) was submitted, so its state holds batches 0..b+1 and a resume from it repeats
batches b and b+1: 1 + submit_ahead optimizer steps (tinker-cookbook's own behaviour).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tinker_recovery.cookbook import CHECKPOINTS_FILE, SIDECAR_FILE, read_log
from tinker_recovery.testing import FakeTinker

tinker = pytest.importorskip("tinker")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cookbook_style_sl.py"
TIME_OUT_S = 90.0


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("cookbook_style_sl", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WallClock:
    """FakeTinker's wall clock: real time plus an offset the test moves (checkpoint expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Supervised:
    """``tinker-recovery run ... -- python examples/cookbook_style_sl.py ...`` as a child process; its
    output lines are read by two threads into a queue the test waits on."""

    def __init__(self, fake: FakeTinker, log_dir: Path, program: list[str], options: list[str]) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
        env.update(
            TINKER_API_KEY=fake.api_key,
            TINKER_BASE_URL=fake.base_url,
            PYTHONPATH=str(REPO),
            TINKER_TELEMETRY="0",
            PYTHONWARNINGS="ignore::FutureWarning",
        )
        self.argv = [
            sys.executable,
            "-m",
            "tinker_recovery",
            "run",
            "--log-path",
            str(log_dir),
            *options,
            "--",
            sys.executable,
            str(EXAMPLE),
            f"log_path={log_dir}",
            *program,
        ]
        self.proc = subprocess.Popen(
            self.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=log_dir.parent
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.arrived: list[tuple[float, str]] = []  # (time.monotonic(), line): for the time break-down
        self.seen: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True, name=f"test.{name}")
            for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.arrived.append((time.monotonic(), line.rstrip("\n")))
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = TIME_OUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw:\n" + "\n".join(self.seen)) from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def finish(self, timeout: float = TIME_OUT_S) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def fake(wall: WallClock) -> Any:
    with FakeTinker(clock=wall) as server:
        yield server


def metrics(log_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]


def reference_losses(fake: FakeTinker, batches: list[int]) -> list[float]:
    """One uninterrupted run fed ``batches`` in this order (same model, data and optimizer)."""
    example = _example()
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as service:
        client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).result()
        adam = tinker.types.AdamParams(learning_rate=0.05)
        losses = []
        for batch in batches:
            forward_backward = client.forward_backward(example.datums(tinker.types, batch), "cross_entropy")
            optim = client.optim_step(adam)
            losses.append(float(forward_backward.result().metrics["loss:sum"]))
            optim.result()
    return losses


def check_no_batch_lost(
    fake: FakeTinker, log_dir: Path, n_batches: int, resumed_at: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both launches' batches and losses against the reference; returns (first, second) launch rows."""
    rows = metrics(log_dir)
    first = [row for row in rows if row["launch"] == 0]
    second = [row for row in rows if row["launch"] == 1]
    assert {row["launch"] for row in rows} == {0, 1}
    last_first = first[-1]["batch"]
    assert [row["batch"] for row in first] == list(range(last_first + 1))
    assert [row["batch"] for row in second] == list(
        range(resumed_at, n_batches)
    )  # nothing lost up to the end
    # the state of record `resumed_at` holds batches 0..resumed_at+1 (submit_ahead=1)
    fed = list(range(resumed_at + 2)) + list(range(resumed_at, n_batches))
    reference = reference_losses(fake, fed)
    assert [row["loss"] for row in second] == reference[resumed_at + 2 :]
    uninterrupted = reference_losses(fake, list(range(last_first + 1)))
    assert [row["loss"] for row in first] == uninterrupted
    return first, second


def seen_line(run: Supervised, text: str) -> bool:
    return any(line.endswith(text) for line in run.seen)


def journal_events(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


def report(
    what: str, seconds: float, poll_interval: str, run: Supervised | None = None, since: float = 0.0
) -> None:
    sys.stderr.write(
        f"\n[measure] {what}: corruption -> next successful batch {seconds:.2f} s "
        f"(poll interval {poll_interval} s)\n"
    )
    for moment, line in sorted(run.arrived if run is not None else []):
        if moment >= since:
            sys.stderr.write(f"[measure]   +{moment - since:6.2f} s  {line[:110]}\n")


def test_a_hung_loop_is_detected_stopped_and_resumed_from_its_last_record(
    fake: FakeTinker, tmp_path: Path
) -> None:
    log_dir = tmp_path / "sl"
    journal = tmp_path / "journal.jsonl"
    run = Supervised(
        fake,
        log_dir,
        ["n_batches=10", "save_every=2", "hold_after=5"],
        [
            "--poll-interval",
            "0.2",
            "--grace",
            "5",
            "--answer",
            "resume",
            "--backoff",
            "0",
            "--journal",
            str(journal),
        ],
    )
    try:
        run_id = run.wait_for(r"^training run (\S+)$").group(1)
        run.wait_for(r"^holding after batch 5$")
        corrupted_at = time.monotonic()
        fake.corrupt(run_id)
        run.wait_for(r"stopping the command: SIGINT")
        new_run = run.wait_for(r"^training run (\S+)$").group(1)
        assert run.finish() == 0, "\n".join(run.seen)
    finally:
        run.kill()
    assert new_run != run_id
    # the prompt has no newline of its own: the answer's effect follows it on the same line
    assert seen_line(
        run,
        f"already exists. What do you want to do? [delete, resume, exit]: "
        f"resuming from tinker://{run_id}/weights/000004 at batch 4",
    )
    first, second = check_no_batch_lost(fake, log_dir, 10, resumed_at=4)
    assert sorted({row["batch"] for row in first} & {row["batch"] for row in second}) == [4, 5]  # repeated
    assert fake.load_weights_count(run_id) == 1
    assert journal_events(journal) == ["detected", "started", "checkpoint_selected", "completed"]
    report("hung loop, detected by poll", second[0]["t"] - corrupted_at, "0.2", run, corrupted_at)


def test_a_loop_that_crashes_on_its_corrupted_run_is_resumed(fake: FakeTinker, tmp_path: Path) -> None:
    log_dir = tmp_path / "sl"
    run = Supervised(
        fake,
        log_dir,
        ["n_batches=14", "save_every=2"],
        [
            "--poll-interval",
            "30",
            "--grace",
            "5",
            "--relaunch-arg",
            "behavior_if_exists=resume",
            "--backoff",
            "0",
        ],
    )
    try:
        run_id = run.wait_for(r"^training run (\S+)$").group(1)
        run.wait_for(r"^batch 5 loss")
        corrupted_at = time.monotonic()
        fake.corrupt(run_id)
        run.wait_for(r"exited with 1 and its run .* reads corrupted")  # found by the look after the exit
        assert run.finish() == 0, "\n".join(run.seen)
    finally:
        run.kill()
    own = [r for r in read_log(log_dir).records if r.run_id == run_id and r.state_path]
    resumed_at = own[-1].batch
    assert resumed_at is not None and resumed_at >= 4
    assert seen_line(run, f"resuming from {own[-1].state_path} at batch {resumed_at}")
    first, second = check_no_batch_lost(fake, log_dir, 14, resumed_at=resumed_at)
    # repeated: the batches the first launch ran from the record on (1 + submit_ahead of them were in
    # the record's state already; the later ones were lost with the corrupted run)
    repeated = sorted({row["batch"] for row in first} & {row["batch"] for row in second})
    assert repeated == list(range(resumed_at, first[-1]["batch"] + 1)) and len(repeated) >= 2
    report(
        "loop crashing on the refused call, found at its exit", second[0]["t"] - corrupted_at, "30 (not used)"
    )


def test_an_expired_rolling_record_falls_back_to_the_periodic_one(
    fake: FakeTinker, wall: WallClock, tmp_path: Path
) -> None:
    log_dir = tmp_path / "sl"
    run = Supervised(
        fake,
        log_dir,
        ["n_batches=10", "save_every=4", "rolling_save_every=3", "hold_after=6"],
        ["--poll-interval", "0.2", "--grace", "5", "--answer", "resume", "--backoff", "0"],
    )
    try:
        run_id = run.wait_for(r"^training run (\S+)$").group(1)
        run.wait_for(r"^holding after batch 6$")
        names = [r.name for r in read_log(log_dir).records]
        assert names == ["000003", "000004", "000006"]  # rolling, periodic, rolling
        listed = {c["checkpoint_id"] for c in fake.list_checkpoints(run_id)}
        assert "weights/000003" not in listed  # deleted when the next rolling save landed
        wall.offset += 7201  # the rolling save's 2 h TTL is over
        assert "weights/000006" not in {c["checkpoint_id"] for c in fake.list_checkpoints(run_id)}
        corrupted_at = time.monotonic()
        fake.corrupt(run_id)
        assert run.finish() == 0, "\n".join(run.seen)
    finally:
        run.kill()
    assert seen_line(
        run, f"resuming from tinker://{run_id}/weights/000004 at batch 4"
    )  # not the expired 000006
    first, second = check_no_batch_lost(fake, log_dir, 10, resumed_at=4)
    # repeated: 4 and 5 (in 000004's state already: submit_ahead=1) and 6 (saved only in the expired
    # rolling 000006, so lost)
    assert sorted({row["batch"] for row in first} & {row["batch"] for row in second}) == [4, 5, 6]
    moved = [json.loads(line) for line in (log_dir / SIDECAR_FILE).read_text().splitlines()]
    assert [(m["record"]["name"], m["reason"]) for m in moved] == [("000006", "deleted")]
    kept = [r.name for r in read_log(log_dir).records if r.run_id == run_id]
    assert kept == ["000003", "000004"]  # the log stays a valid cookbook log, resumable from 000004
    assert (log_dir / CHECKPOINTS_FILE).exists()
    report("expired rolling checkpoint, fallback to the periodic one", second[0]["t"] - corrupted_at, "0.2")
