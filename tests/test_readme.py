"""The README's code runs: every python block marked ``<!-- test: run ... -->`` is run as a child process
against a FakeTinker started here, with only ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` pointing at it.

A marker ``<!-- test: run; corrupt after: TEXT -->`` also corrupts the run the block trains, once, through
the fake's ``/_fake/`` admin API: right after the first line holding TEXT (the block's checkpoint save), at
that line's enclosing indentation, when the loop's ``step`` is ``CORRUPT_AT_STEP``. Such a block must then see
a recovery (it prints ``recoveries: 1``) and train every step.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinker_recovery.testing import FakeTinker

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CORRUPT_AT_STEP = 5
TIMEOUT_S = 120.0

MARKER = re.compile(
    r"<!-- test: run(?:; corrupt after: (?P<after>[^>]*?))? -->\n```python\n(?P<code>.*?)```", re.DOTALL
)

# Defined ahead of a block's own code; dunder names so no block's names collide with it.
CORRUPT_HELPER = f"""
import os as __os
import time as __time
import requests as __requests
__corrupted = []
def __readme_corrupt(client, step):
    if step != {CORRUPT_AT_STEP} or __corrupted:
        return
    __corrupted.append(client.model_id)
    answer = __requests.post(
        __os.environ["TINKER_BASE_URL"] + "/_fake/runs/" + client.model_id + "/corrupt",
        headers={{"X-API-Key": __os.environ["TINKER_API_KEY"]}}, json={{"corrupted": True}}, timeout=10)
    answer.raise_for_status()
    print("README-TEST corrupted", client.model_id, "at", repr(__time.monotonic()), flush=True)
"""


def readme_blocks() -> list[tuple[int, str | None, str]]:
    """(line number, corrupt-after text or None, code) of every marked python block."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group("after"), m.group("code")) for m in MARKER.finditer(text)
    ]


def with_corruption(code: str, after: str) -> str:
    """``code`` with a call to ``__readme_corrupt(client, step)`` right after the first line holding
    ``after``, at the indentation of the block that line is in (one level out)."""
    lines = code.splitlines()
    for index, line in enumerate(lines):
        if after in line:
            indent = len(line) - len(line.lstrip())
            outer = " " * max(indent - 4, 0)
            lines.insert(index + 1, f"{outer}__readme_corrupt(client, step)")
            return CORRUPT_HELPER + "\n".join(lines) + "\n"
    raise AssertionError(f"the README block has no line holding {after!r}")


def run_block(code: str, fake: FakeTinker, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(
        TINKER_BASE_URL=fake.base_url,
        TINKER_API_KEY=fake.api_key,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


BLOCKS = readme_blocks()


def test_the_readme_marks_the_quickstart_and_the_asyncio_loop_to_be_run():
    text = README.read_text()
    quickstart = text.index("## Quickstart")
    marked = [line for line, _, _ in BLOCKS]
    assert len(BLOCKS) >= 3, marked
    first_line = text.count("\n", 0, quickstart) + 1
    next_section = text.count("\n", 0, text.index("\n## ", quickstart + 1)) + 1
    assert any(first_line < line < next_section and after for line, after, _ in BLOCKS), marked
    assert any("asyncio.run(main())" in code and after for _, after, code in BLOCKS), marked


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("line, after, code", BLOCKS, ids=[f"README.md:{line}" for line, _, _ in BLOCKS])
def test_the_readme_block_runs_against_faketinker(line, after, code, tmp_path):
    with FakeTinker() as fake:
        source = with_corruption(code, after) if after else code
        done = run_block(source, fake, tmp_path)
        assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-4000:]
        if after is None:
            return
        # The block trained its run, was corrupted once, and recovered into a new run from the step-5 save.
        assert "README-TEST corrupted" in done.stdout, done.stdout
        assert re.search(r"\brecoveries: 1\b", done.stdout), done.stdout
        corrupted = re.search(r"README-TEST corrupted (\S+) at", done.stdout).group(1)
        assert fake.describe_run(corrupted)["corrupted"] is True
        loads = fake.loads(corrupted)
        assert [load.checkpoint.rsplit("/", 1)[1] for load in loads] == [f"step-{CORRUPT_AT_STEP:06d}"], loads
        assert loads[0].optimizer is True  # restore_optimizer=True, the default
        assert fake.source_checkpoint(loads[0].run_id) == loads[0].checkpoint


def test_a_block_that_breaks_fails_the_readme_test(tmp_path):
    """The harness can fail: a block whose loop never sees a recovery is caught."""
    _, after, code = next(block for block in BLOCKS if block[1])
    broken = with_corruption(code.replace("recovery.client, recovery.step", "client, step"), after)
    broken = broken.replace("handle.wait_for_recovery(timeout=600)", "raise SystemExit(3)")
    broken = broken.replace("await handle.wait_for_recovery_async(timeout=600)", "raise SystemExit(3)")
    with FakeTinker() as fake:
        started = time.monotonic()
        done = run_block(broken, fake, tmp_path)
    assert done.returncode == 3, (done.stdout[-2000:], done.stderr[-2000:])
    assert time.monotonic() - started < TIMEOUT_S


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_the_quickstart_re_raises_its_own_error_at_once_instead_of_waiting_for_a_recovery(tmp_path):
    """A malformed datum (weights shorter than the targets) is the loop's own error: ``handle.check()``
    reads the run healthy, so the Quickstart re-raises it at once rather than waiting 600 s."""
    _, _, code = next(block for block in BLOCKS if "with tr.Executor() as executor" in block[2])
    broken = code.replace('"weights": [1.0] * (len(tokens) - 1)', '"weights": [1.0]')
    assert broken != code
    with FakeTinker() as fake:
        started = time.monotonic()
        done = run_block(broken, fake, tmp_path)
        elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-2000:])
    assert "RequestFailedError" in done.stderr, done.stderr[-3000:]
    assert elapsed < 60, elapsed  # not the 600 s wait_for_recovery


def quickstart_section() -> str:
    text = README.read_text()
    return text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_the_quickstart_pasted_unchanged_recovers_against_the_fake_server_the_readme_starts(tmp_path):
    """What a new user does: the Quickstart's three commands as written (the fake-server line with
    ``--port 0`` added, since a test cannot count on port 8000), the variables it printed exported,
    and the Quickstart block saved as quickstart.py, unchanged. It must see a recovery."""
    section = quickstart_section()
    [commands] = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    serve, export, run = [line.split("#", 1)[0].strip() for line in commands.strip().splitlines()]
    assert serve.startswith("tinker-recovery fake-server ") and "--corrupt-after-saves" in serve, serve
    assert re.fullmatch(r"export TINKER_BASE_URL=\S+ TINKER_API_KEY=\S+", export), export
    assert run == "python quickstart.py"
    [code] = [m.group("code") for m in MARKER.finditer(section) if "with tr.Executor()" in m.group("code")]

    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(HOME=str(tmp_path), TINKER_TELEMETRY="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "tinker_recovery", *shlex.split(serve)[1:], "--port", "0"]
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        printed: dict[str, str] = {}
        while len(printed) < 2:
            line = server.stdout.readline()
            assert line, server.stderr.read() if server.stderr else "fake-server ended"
            name, _, value = line.strip().partition("=")
            if name in ("TINKER_BASE_URL", "TINKER_API_KEY"):
                printed[name] = value
        (tmp_path / "quickstart.py").write_text(code)
        done = subprocess.run([sys.executable, "quickstart.py"], env={**env, **printed}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)

    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.rstrip().endswith("trained 20 steps; recoveries: 1"), done.stdout
    log = done.stderr
    recovered = re.search(r"train recovered from tinker://\S+:train:0/weights/step-000005\n", log)
    assert recovered is not None, log[-4000:]
    assert log.index("train step 5 loss") < recovered.start() < log.index("train step 6 loss"), log[-4000:]
    assert "Traceback" not in log
