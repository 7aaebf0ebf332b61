"""Measure "restored runs per corruption" under kill -9 at random points (not a test; run by hand):

    PYTHONPATH=$PWD python tests/_kill_figures.py [KILLS=24] [SEED=11] [SPAN_S=measured]

First one child recovers a corrupted run undisturbed: the time from its "ready" to its exit is the
span (unless SPAN_S is given; a fixed span longer than a recovery lets most children finish before
the kill). Then, until KILLS children have really been killed, each trial corrupts a fresh FakeTinker
run, starts tests/_kill_child.py, kills it (SIGKILL) at a uniform random time in [0, span] after it is
ready, starts it again (it resumes with the recovery id it wrote at ``started``, as a journal would)
and counts the runs restored from the corrupted one. A child that finished before its kill time is
counted apart and not as a kill.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinker_recovery.candidates import LINEAGE_KEY
from tinker_recovery.testing import FakeTinker

CHILD = Path(__file__).with_name("_kill_child.py")


def main() -> None:
    target = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 11)
    span = float(sys.argv[3]) if len(sys.argv) > 3 else None
    env = {**os.environ, "TINKER_TELEMETRY": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    kills = after_create = restored = unkilled = trials = 0
    with FakeTinker(seed=1) as fake, tempfile.TemporaryDirectory() as tmp:

        def start(run_id: str, trial: int) -> tuple[subprocess.Popen[str], list[str]]:
            args = [sys.executable, str(CHILD), fake.base_url, fake.api_key, run_id, f"{tmp}/id-{trial}"]
            child = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
            )
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            return child, args

        def created(run_id: str) -> int:
            return sum(
                (fake.get_run(r).get("user_metadata") or {}).get(LINEAGE_KEY) == run_id for r in fake.run_ids
            )

        if span is None:
            run_id = fake.add_run(checkpoints=2)
            fake.corrupt(run_id)
            child, _ = start(run_id, -1)
            began = time.monotonic()
            child.wait(120)
            span = time.monotonic() - began
            print(f"an undisturbed recovery: {span:.3f} s from ready to exit (the span)", flush=True)
        while kills < target:
            run_id = fake.add_run(checkpoints=2)
            fake.corrupt(run_id)
            child, args = start(run_id, trials)
            delay = rng.uniform(0, span)
            try:
                child.wait(timeout=delay)  # the kill point; not a wait for a thread
                killed = False
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                killed = True
            before = created(run_id)
            again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
            count = created(run_id)
            kills += killed
            unkilled += not killed
            after_create += killed and before > 0
            restored += count
            trials += 1
            print(
                f"trial {trials:2d}: kill at {delay:.3f} s killed={killed} runs before restart={before} "
                f"after={count} rc={again.returncode}",
                flush=True,
            )
    print(
        f"corruptions {trials}, kills {kills} ({after_create} after the restored run existed; {unkilled} "
        f"children finished before their kill time), restored runs {restored}: "
        f"{restored / trials:.2f} per corruption"
    )


if __name__ == "__main__":
    main()
