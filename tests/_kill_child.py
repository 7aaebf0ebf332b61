"""Child process for tests/test_executor_kill.py: recover one run with the official SDK, then exit.

argv: base_url api_key run_id id_file. Like a journal, the child writes the recovery id from the
``started`` signal to ``id_file`` (synchronously, before the attempt's create call); a child started
again reads it and passes it as ``recovery_id=``, so the executor resumes that recovery.
"""

import os
import sys

os.environ.setdefault("TINKER_TELEMETRY", "0")

import tinker

import tinker_recovery as tr


def main() -> int:
    base_url, api_key, run_id, id_file = sys.argv[1:5]
    recovery_id = None
    if os.path.exists(id_file):
        with open(id_file) as f:
            recovery_id = f.read().strip() or None

    def journal(sender, **payload):
        if recovery_id is None and not os.path.exists(id_file):
            with open(id_file + ".tmp", "w") as f:
                f.write(payload["recovery_id"])
                f.flush()
                os.fsync(f.fileno())
            os.replace(id_file + ".tmp", id_file)

    tr.signals.started.connect(journal, weak=False)
    config = tr.Config(api_key=api_key, base_url=base_url, timeout_s=5.0, max_retries=0)
    policy = tr.Policy(
        enabled=True, jitter="none", backoff_ms=10, max_backoff_ms=10, attempt_timeout_ms=20_000
    )
    print("ready", flush=True)
    with (
        tinker.ServiceClient(base_url=base_url, api_key=api_key) as service,
        tr.Executor(1, config=config) as ex,
    ):
        recovery = ex.recover(run_id, service, policy, recovery_id=recovery_id).result(60)
        print(f"done {recovery.new_run_id} attempts={recovery.attempts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
