"""The examples, run as a new user runs them: as subprocesses with a time-out, and the notebook
executed by nbclient."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_recovery import signals
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
    return subprocess.run(
        [sys.executable, *args],
        env=clean_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=TIME_OUT_S,
        check=False,
    )


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
    seeded = re.fullmatch(
        r"checkpoint seeded: (tinker://(\S+)/weights/step-000010) "
        r"\(FakeTinker at http://127\.0\.0\.1:\d+\)",
        steps[1],
    )
    assert seeded, steps[1]
    path, run_id = seeded.groups()
    assert steps[2] == f"corruption flagged: run {run_id} now reads corrupted: true"
    assert steps[3] == f"detected: the monitor read {run_id} as corrupted (last checkpoint step-000010)"
    recovered = re.fullmatch(
        rf"recovered from {re.escape(path)} into (\S+) \(attempt 1; signals: detected, "
        r"started, checkpoint_selected, client_created, completed\)",
        steps[4],
    )
    assert recovered, steps[4]
    new_run_id = recovered.group(1)
    assert new_run_id != run_id
    assert steps[5] == (
        f"checkpoints processed: {path} (restored; loaded 1 time(s)) -> "
        f"tinker://{new_run_id}/weights/after-recovery (saved by the recovered client)"
    )
    assert steps[6].startswith(
        f"final run status: {run_id} corrupted=True; {new_run_id} corrupted=False, "
        f"last checkpoint weights/after-recovery; monitor watching ['{new_run_id}']"
    )
    assert result.stdout.rstrip().endswith("simulated: OK, the corrupted run was recovered")
    assert result.stderr == ""


def test_simulated_example_recovers_a_corrupted_run_offline(tmp_path):
    check_simulated_output(run(["-m", "tinker_recovery.examples.simulated"], tmp_path))


def test_simulated_example_needs_no_official_sdk(tmp_path):
    code = BLOCK_SDK + (
        "import runpy; runpy.run_module('tinker_recovery.examples.simulated', run_name='__main__')"
    )
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
    assert re.fullmatch(
        r"simulated: FAILED: recovery of \S+ was given up: fatal: HTTP 400 .*"
        r"POST /api/v1/load_weights answered 400: injected fault.*\n",
        err,
    ), err


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
    created = re.match(
        r"created a LoRA training client: run (\S+) on Qwen/Qwen3-8B \(FakeTinker at ", steps[1]
    )
    run_id = created.group(1)
    first = f"tinker://{run_id}/weights/recovery-live-1"
    assert steps[2] == f"saved checkpoint {first}"
    assert steps[3] == (
        f"injected: the next poll of {run_id} reads corrupted: true (the server is not changed)"
    )
    assert steps[4] == f"detected: last checkpoint {first}"
    recovered = re.fullmatch(rf"recovered from {re.escape(first)} into (\S+) \(attempt 1\)", steps[5])
    new_run_id = recovered.group(1)
    assert new_run_id != run_id
    assert steps[6] == (
        f"second checkpoint saved from the recovered client: tinker://{new_run_id}/weights/recovery-live-2"
    )
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
    recovered = re.search(
        rf"^recovered from {re.escape(restored_path)} into run (\S+); resuming at step 8$", out, re.MULTILINE
    )
    assert recovered and saved[2][1] == recovered.group(1) != first_run
    assert "steps run after restoring step-000008: 8, 9, 10, 11\n" in out
    timing = re.search(
        r"^ +corruption -> next successful step: ([0-9.]+) s \(poll interval 100 ms\)$", out, re.MULTILINE
    )
    assert timing and float(timing.group(1)) < 15.0, out
    assert out.rstrip().splitlines()[-1].startswith("verified: steps 0..11 applied once each, in order")
    assert out.rstrip().endswith("steps [8, 9] ran twice (after step-000008, lost with the corrupted run)")


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

NOTEBOOK = REPO / "examples" / "recovery.ipynb"
UPDATE_ENV = "UPDATE_NOTEBOOK_OUTPUTS"  # =1: the test stores fresh outputs instead of comparing


def _normalised(text: str) -> str:
    """Output text without what changes from run to run: the fake's port and the ids it makes."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)


def _outputs(cell) -> list[tuple[str, str]]:
    """A code cell's outputs as (kind, normalised text): streams and the cell's plain-text result.

    Consecutive chunks of one stream are joined: the kernel flushes stdout on a timer, so on a busy
    machine one print can arrive as two stream outputs."""
    found: list[tuple[str, str]] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            if found and found[-1][0] == output.name:
                found[-1] = (output.name, _normalised(found[-1][1] + output.text))
            else:
                found.append((output.name, _normalised(output.text)))
        elif output.output_type == "execute_result":
            found.append(("result", _normalised(output.data["text/plain"])))
        else:
            found.append((output.output_type, _normalised(str(output.get("evalue", output.get("data"))))))
    return found


def _kernel_env(monkeypatch, home: Path) -> None:
    for key in [key for key in os.environ if key.startswith("TINKER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


def _client(notebook, home: Path):
    nbclient = pytest.importorskip("nbclient")
    return nbclient.NotebookClient(
        notebook,
        timeout=TIME_OUT_S,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(home)}},
    )


def _tagged(notebook) -> dict[str, int]:
    """Each code cell's tag (its role) -> its index."""
    return {
        cell.metadata["tags"][0]: index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }


def test_notebook_uses_the_public_api_only():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert not re.search(r"^\s*(from|import)\s+[\w.]*\._", source, re.MULTILINE)  # no private module
    assert not re.search(r"\b\w+\._\w", source)  # no private attribute or helper of any object
    assert "examples" not in re.findall(r"^\s*(?:from|import)\s+([\w.]+)", source, re.MULTILINE)
    assert "weak=False" in source
    # The README's way: the endpoint given once (to the service), the client as a documented argument.
    assert "tr.Config(" not in source and 'metadata={"training_client"' not in source
    assert "training_client=training_client" in source and "handle.check()" in source


def test_notebook_is_stored_with_current_outputs(tmp_path, monkeypatch):
    """Executes the notebook and compares its outputs with the stored ones (ports and ids aside).

    After a deliberate change to what the notebook prints, store fresh outputs with
    ``UPDATE_NOTEBOOK_OUTPUTS=1 python -m pytest tests/test_examples.py -k current_outputs``.
    """
    nbformat = pytest.importorskip("nbformat")
    stored = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in stored.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    assert sum(bool(cell.outputs) for cell in code_cells) >= 7, "stored without outputs"

    _kernel_env(monkeypatch, tmp_path)
    fresh = nbformat.from_dict(copy.deepcopy(stored))
    _client(fresh, tmp_path).execute()
    if os.environ.get(UPDATE_ENV) == "1":
        nbformat.write(fresh, NOTEBOOK)
        pytest.skip(f"stored fresh outputs in {NOTEBOOK}")

    for before, now in zip(stored.cells, fresh.cells, strict=True):
        if before.cell_type == "code":
            assert _outputs(now) == _outputs(before), (
                f"cell {before.metadata['tags']}: outputs changed; "
                f"if that is intended, re-run with {UPDATE_ENV}=1"
            )
    text = "".join(text for cell in fresh.cells if cell.cell_type == "code" for _, text in _outputs(cell))
    assert "step 6 refused:" in text and "Traceback" not in text
    assert re.search(r"into run \S+; resuming at step 4", text)


PROBE = """
import threading, time
left = [thread for thread in threading.enumerate() if thread.name.startswith("tinker_recovery")]
deadline = time.monotonic() + 10
for thread in left:
    thread.join(max(0.0, deadline - time.monotonic()))
print(sorted(thread.name for thread in left if thread.is_alive()), [len(s.receivers) for s in signals.ALL])
"""


def test_every_notebook_cell_can_be_run_again_without_doubling_anything(tmp_path, monkeypatch):
    """Each cell twice in a row; then the story again from the receivers cell; clean-up twice, the
    set-up again after it: no error, one receiver per signal, and after the last clean-up no thread
    of a Monitor, an Executor or a fake server left running."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tags = _tagged(notebook)
    story = ["receivers", "start", "train", "corrupt", "recover", "replay", "check"]
    order = [tag for tag in ["setup", "helpers", *story] for _ in range(2)]
    order += [*story, "cleanup", "cleanup", "setup", "cleanup"]
    assert set(order) == set(tags)

    _kernel_env(monkeypatch, tmp_path)
    client = _client(notebook, tmp_path)
    pristine = copy.deepcopy(notebook.cells)
    probe = nbformat.v4.new_code_cell(PROBE)
    notebook.cells.append(probe)
    ran = []
    with client.setup_kernel():
        for count, tag in enumerate(order):
            cell = copy.deepcopy(pristine[tags[tag]])
            client.execute_cell(cell, tags[tag], execution_count=count + 1)
            ran.append((tag, _outputs(cell)))
        client.execute_cell(probe, len(notebook.cells) - 1, execution_count=len(order) + 1)

    errors = [(tag, outputs) for tag, outputs in ran if any(kind == "error" for kind, _ in outputs)]
    assert errors == []
    receivers = [outputs for tag, outputs in ran if tag == "receivers"]
    assert len(receivers) == 3 and all(
        outputs and outputs[0][1].count(": 1") == len(signals.ALL) for outputs in receivers
    ), receivers
    recovered = [text for tag, outputs in ran if tag == "recover" for _, text in outputs]
    assert len(recovered) == 3 and all("resuming at step 4" in text for text in recovered)
    assert _outputs(probe) == [("stdout", f"[] {[0] * len(signals.ALL)}\n")]
