"""Measure "restored runs per corruption" under kill -9 at random points (not a test; run by hand):

    PYTHONPATH=$PWD python tests/_kill_figures.py [TRIALS=24] [SEED=11] [SPAN_S=2.6]

Each trial corrupts a fresh FakeTinker run, starts tests/_kill_child.py, kills it (SIGKILL) at a
uniform random time in [0, SPAN_S] after it is ready, starts it again (it resumes with the recovery id
it wrote at ``started``, as a journal would) and counts the runs restored from the corrupted one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tinker_recovery.candidates import LINEAGE_KEY
from tinker_recovery.testing import FakeTinker

CHILD = Path(__file__).with_name("_kill_child.py")


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 11)
    span = float(sys.argv[3]) if len(sys.argv) > 3 else 2.6
    env = {**os.environ, "TINKER_TELEMETRY": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    kills = after_create = restored = 0
    with FakeTinker(seed=1) as fake, tempfile.TemporaryDirectory() as tmp:
        for trial in range(trials):
            run_id = fake.add_run(checkpoints=2)
            fake.corrupt(run_id)
            args = [
                sys.executable,
                str(CHILD),
                fake.base_url,
                fake.api_key,
                run_id,
                os.path.join(tmp, f"id-{trial}"),
            ]

            def created(run_id: str = run_id) -> int:
                return sum(
                    (fake.get_run(r).get("user_metadata") or {}).get(LINEAGE_KEY) == run_id
                    for r in fake.run_ids
                )

            child = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
            )
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            delay = rng.uniform(0, span)
            try:
                child.wait(timeout=delay)
                killed = False
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                killed = True
            before = created()
            again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
            count = created()
            kills += killed
            after_create += killed and before > 0
            restored += count
            print(
                f"trial {trial:2d}: kill at {delay:.3f} s killed={killed} runs before restart={before} "
                f"after={count} rc={again.returncode}",
                flush=True,
            )
    print(
        f"corruptions {trials}, kills {kills} ({after_create} after the restored run existed), restored runs "
        f"{restored}: {restored / trials:.2f} per corruption"
    )


if __name__ == "__main__":
    main()
