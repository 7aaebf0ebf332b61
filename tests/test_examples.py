"""The examples, run as a new user runs them: as subprocesses with a time-out, and the notebook
executed by nbclient."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_recovery.examples import _common, simulated
from tinker_recovery.testing import FakeTinker

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TIME_OUT_S = 60
BLOCK_SDK = "import sys; sys.modules['tinker'] = None; "  # makes `import tinker` raise ImportError


def clean_env(home: Path) -> dict[str, str]:
    """The environment without any TINKER_* setting (no real key), telemetry off, HOME in tmp."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(HOME=str(home), TINKER_TELEMETRY="0")
    return env


def run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=clean_env(home), cwd=home, capture_output=True,
                          text=True, timeout=TIME_OUT_S, check=False)


def numbered(stdout: str) -> dict[int, str]:
    """The lines ``N) ...`` by their number."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d)\) (.*)$", stdout, re.MULTILINE)}


def check_one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- simulated ------------------------------------------------------------------------------------


def check_simulated_output(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result
    steps = numbered(result.stdout)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    seeded = re.fullmatch(r"checkpoint seeded: (tinker://(\S+)/weights/step-000010) "
                          r"\(FakeTinker at http://127\.0\.0\.1:\d+\)", steps[1])
    assert seeded, steps[1]
    path, run_id = seeded.groups()
    assert steps[2] == f"corruption flagged: run {run_id} now reads corrupted: true"
    assert steps[3] == f"detected: the monitor read {run_id} as corrupted (last checkpoint step-000010)"
    recovered = re.fullmatch(rf"recovered from {re.escape(path)} into (\S+) \(attempt 1; signals: detected, "
                             r"started, checkpoint_selected, client_created, completed\)", steps[4])
    assert recovered, steps[4]
    new_run_id = recovered.group(1)
    assert new_run_id != run_id
    assert steps[5] == (f"checkpoints processed: {path} (restored; loaded 1 time(s)) -> "
                        f"tinker://{new_run_id}/weights/after-recovery (saved by the recovered client)")
    assert steps[6].startswith(f"final run status: {run_id} corrupted=True; {new_run_id} corrupted=False, "
                               f"last checkpoint weights/after-recovery; monitor watching ['{new_run_id}']")
    assert result.stdout.rstrip().endswith("simulated: OK, the corrupted run was recovered")
    assert result.stderr == ""


def test_simulated_example_recovers_a_corrupted_run_offline(tmp_path):
    check_simulated_output(run(["-m", "tinker_recovery.examples.simulated"], tmp_path))


def test_simulated_example_needs_no_official_sdk(tmp_path):
    code = BLOCK_SDK + ("import runpy; "
                        "runpy.run_module('tinker_recovery.examples.simulated', run_name='__main__')")
    assert "import tinker\n" not in Path(simulated.__file__).read_text()
    check_simulated_output(run(["-c", code], tmp_path))


class _RefusingLoads(FakeTinker):
    """A FakeTinker that refuses every load_weights with a 400, so recovery cannot succeed."""

    def start(self):
        super().start()
        self.add_fault("POST", r"^/api/v1/load_weights$", status=400)
        return self


def test_simulated_example_reports_a_failed_recovery_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(simulated, "FakeTinker", _RefusingLoads)

    assert simulated.main([]) == 1

    out, err = capsys.readouterr()
    assert "3) detected" in out and "4)" not in out
    assert err.count("\n") == 1
    assert re.fullmatch(r"simulated: FAILED: recovery of \S+ was given up: fatal: HTTP 400 .*"
                        r"POST /api/v1/load_weights answered 400: injected fault.*\n", err), err


def test_simulated_example_refuses_a_bad_timeout(capsys):
    with pytest.raises(SystemExit) as exit_:
        simulated.main(["--timeout", "0"])
    assert exit_.value.code == 2
    assert "--timeout: must be > 0" in capsys.readouterr().err


# --- live_injected ------------------------------------------------------------------------------


def test_live_injected_local_restores_from_the_injected_corruption(tmp_path):
    result = run(["-m", "tinker_recovery.examples.live_injected", "--local"], tmp_path)

    assert result.returncode == 0, result
    steps = numbered(result.stdout)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    created = re.match(r"created a LoRA training client: run (\S+) on Qwen/Qwen3-8B \(FakeTinker at ",
                       steps[1])
    run_id = created.group(1)
    first = f"tinker://{run_id}/weights/recovery-live-1"
    assert steps[2] == f"saved checkpoint {first}"
    assert steps[3] == (f"injected: the next poll of {run_id} reads corrupted: true "
                        "(the server is not changed)")
    assert steps[4] == f"detected: last checkpoint {first}"
    recovered = re.fullmatch(rf"recovered from {re.escape(first)} into (\S+) \(attempt 1\)", steps[5])
    new_run_id = recovered.group(1)
    assert new_run_id != run_id
    assert steps[6] == ("second checkpoint saved from the recovered client: "
                        f"tinker://{new_run_id}/weights/recovery-live-2")
    assert "live_injected: OK" in result.stdout


def test_live_injected_without_a_key_says_what_to_set(tmp_path):
    result = run(["-m", "tinker_recovery.examples.live_injected"], tmp_path)

    line = check_one_line_error(result, 2)
    assert "set TINKER_API_KEY" in line and "TINKER_BASE_URL" in line and "--local" in line
    assert result.stdout == ""


def test_live_injected_without_the_sdk_says_what_to_install(tmp_path):
    code = BLOCK_SDK + "from tinker_recovery.examples.live_injected import main; sys.exit(main(['--local']))"
    result = run(["-c", code], tmp_path)

    line = check_one_line_error(result, 2)
    assert line.endswith('pip install "tinker-recovery[tinker]"'), line


# --- training loop ------------------------------------------------------------------------------


def test_training_loop_survives_corruption_without_skipping_or_repeating_a_step(tmp_path):
    result = run([str(REPO / "examples" / "training_loop.py")], tmp_path)

    assert result.returncode == 0, result
    out = result.stdout
    executed = [int(step) for step in re.findall(r"^step +(\d+)  loss ", out, re.MULTILINE)]
    assert executed == [*range(10), 8, 9, 10, 11]  # 8 and 9 again: they were lost with the corrupted run
    assert re.search(r"^step +10  refused: .*corrupted", out, re.MULTILINE)
    saved = re.findall(r"saved (tinker://(\S+)/weights/step-(\d{6}))", out)
    assert [int(step) for _, _, step in saved] == [4, 8, 12]
    first_run, restored_path = saved[0][1], saved[1][0]
    recovered = re.search(rf"^recovered from {re.escape(restored_path)} into run (\S+); resuming at step 8$",
                          out, re.MULTILINE)
    assert recovered and saved[2][1] == recovered.group(1) != first_run
    assert "steps run after restoring step-000008: 8, 9, 10, 11\n" in out
    assert out.rstrip().splitlines()[-1].startswith("verified: steps 0..11 applied once each, in order")


def test_training_loop_refuses_a_corruption_before_the_first_checkpoint(tmp_path):
    result = run([str(REPO / "examples" / "training_loop.py"), "--corrupt-at", "2"], tmp_path)

    assert result.returncode == 2
    assert "need --save-every <= --corrupt-at < --steps" in result.stderr


def test_step_ledger_finds_a_skipped_or_repeated_step_and_a_wrong_loss():
    ledger = _common.StepLedger()
    for step in range(6):
        ledger.applied(step, float(10 - step))
    ledger.restored(4)
    for step in (4, 5):
        ledger.applied(step, float(10 - step))
    assert ledger.problems(6, [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]) == []

    ledger.applied(7, 3.0)  # step 6 skipped
    assert "steps applied [0, 1, 2, 3, 4, 5, 7], expected 0..7 once each" in ledger.problems(8)[0]

    wrong = _common.StepLedger()
    for step, loss in enumerate([10.0, 9.0, 8.5]):
        wrong.applied(step, loss)
    assert wrong.problems(3, [10.0, 9.0, 8.0]) == [
        "step 2: loss 8.5 differs from the uninterrupted run's 8.0"
    ]


# --- notebook -----------------------------------------------------------------------------------


def test_notebook_runs_clean_and_is_stored_without_outputs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = REPO / "examples" / "recovery.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    source = "\n".join(cell.source for cell in code_cells)
    assert "from tinker_recovery.examples._common import" in source and "weak=False" in source

    for key in [key for key in os.environ if key.startswith("TINKER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    client = nbclient.NotebookClient(notebook, timeout=TIME_OUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [output for cell in code_cells for output in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "step 6 refused:" in text
    assert re.search(r"into run \S+; resuming at step 4", text)
