"""A supervised-learning program written the way tinker-cookbook's recipes are, for ``tinker-recovery run``.

    python examples/cookbook_style_sl.py log_path=DIR [n_batches=12] [save_every=2] [submit_ahead=1]
        [rolling_save_every=0] [rolling_ttl_seconds=7200] [ttl_seconds=604800]
        [behavior_if_exists=ask|resume|raise] [print_run_id=true] [hold_after=-1]

It does not import tinker_cookbook; it follows its file format and behaviour (chz-style ``key=value``
arguments, an asyncio ``main``, the official ``tinker`` SDK's async calls):

- On start, an existing ``log_path`` is handled by ``behavior_if_exists``: ``ask`` asks on the terminal
  ``... [delete, resume, exit]:`` and reads the answer from stdin (``tinker-recovery run --answer resume``
  answers it), ``resume`` resumes, ``raise`` fails.
- Resume = the last record of ``{log_path}/checkpoints.jsonl`` with a ``state_path``, restored with
  ``create_training_client_from_state_with_optimizer_async``, starting at that record's ``batch``.
- Batches are pipelined: batch ``b + submit_ahead`` is submitted before batch ``b`` is finished. Finishing
  batch ``b`` (b > 0, a multiple of ``save_every``) saves checkpoint ``f"{b:06d}"`` (state and sampler
  weights, ``ttl_seconds``) and appends its record ``{"name", "batch": b, "epoch": 0, "final": false,
  "state_path", "sampler_path", "elapsed_tokens"}``. The saved state already holds batches ``0 .. b +
  submit_ahead``, so a resume from it repeats batches ``b .. b + submit_ahead`` (1 + submit_ahead steps),
  as the cookbook's supervised loop does.
- ``rolling_save_every`` > 0 also saves a state-only checkpoint at those batches (when no periodic save
  is due) with ``rolling_ttl_seconds``, and deletes the previous rolling one once the new one is saved.
- Every finished batch appends ``{"launch", "batch", "loss", "t" (time.monotonic()), "run_id"}`` to
  ``{log_path}/metrics.jsonl`` and prints ``batch B loss L``. ``print_run_id=true`` prints
  ``training run <id>`` (a line ``tinker-recovery run`` learns the run from).
- ``hold_after=K`` (tests): in the first launch (``TINKER_RECOVERY_RESTARTS`` unset or 0) it stops after
  finishing batch K and waits until it is interrupted, like a loop stuck on a request.

Reads ``TINKER_BASE_URL`` and ``TINKER_API_KEY``. Exit status: 0 done, 1 a training call failed (e.g. a
corrupted run), 2 bad arguments, 130 interrupted (SIGINT).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import sys
import time
from typing import Any

DEFAULTS: dict[str, str] = {
    "log_path": "",
    "base_model": "Qwen/Qwen3-8B",
    "n_batches": "12",
    "save_every": "2",
    "submit_ahead": "1",
    "ttl_seconds": str(7 * 86400),
    "rolling_save_every": "0",
    "rolling_ttl_seconds": "7200",
    "behavior_if_exists": "ask",
    "print_run_id": "true",
    "hold_after": "-1",
    "learning_rate": "0.05",
}
CHECKPOINTS = "checkpoints.jsonl"


class Usage(Exception):
    pass


def parse(argv: list[str]) -> dict[str, str]:
    """chz-style ``key=value`` arguments; a later one wins."""
    config = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise Usage(f"unknown argument {arg!r}; known: {', '.join(f'{k}=' for k in DEFAULTS)}")
        config[key] = value
    if not config["log_path"]:
        raise Usage("log_path= is required")
    if config["behavior_if_exists"] not in ("ask", "resume", "raise", "delete"):
        raise Usage("behavior_if_exists must be ask, resume, raise or delete")
    return config


def check_log_dir(log_path: str, behavior: str) -> None:
    """As the cookbook's ``check_log_dir``: decide what to do with an existing log directory."""
    if not os.path.exists(log_path):
        os.makedirs(log_path)
        return
    if behavior == "ask":
        while True:
            try:
                answer = input(
                    f"Log directory {log_path} already exists. What do you want to do? "
                    "[delete, resume, exit]: "
                ).strip()
            except EOFError:
                raise Usage("log directory exists and no answer on stdin") from None
            if answer in ("delete", "resume", "exit"):
                behavior = answer
                break
    if behavior == "exit":
        sys.exit(0)
    if behavior == "raise":
        raise Usage(f"log directory {log_path} already exists")
    if behavior == "delete":
        shutil.rmtree(log_path)
        os.makedirs(log_path)


def last_checkpoint(log_path: str) -> dict[str, Any] | None:
    """The last record with a ``state_path``, as the cookbook's ``get_last_checkpoint``."""
    path = os.path.join(log_path, CHECKPOINTS)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        records = [json.loads(line) for line in file if line.strip()]
    with_state = [record for record in records if "state_path" in record]
    return with_state[-1] if with_state else None


def append_jsonl(log_path: str, name: str, data: dict[str, Any]) -> None:
    with open(os.path.join(log_path, name), "a", encoding="utf-8") as file:
        file.write(json.dumps(data) + "\n")
        file.flush()
        os.fsync(file.fileno())


def datums(types: Any, batch: int) -> list[Any]:
    """A tiny, different batch per index (so repeated batches show in the losses)."""
    base = [1 + (batch * 3 + i) % 11 for i in range(6)]
    tokens = [base, [t + 1 for t in base[:4]]]
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(t[:-1]),
            loss_fn_inputs={"target_tokens": t[1:], "weights": [1.0] * (len(t) - 1)},
        )
        for t in tokens
    ]


async def main(config: dict[str, str]) -> None:
    import tinker

    types = tinker.types
    log_path = config["log_path"]
    n_batches, save_every = int(config["n_batches"]), int(config["save_every"])
    submit_ahead, rolling_every = int(config["submit_ahead"]), int(config["rolling_save_every"])
    hold_after = int(config["hold_after"])
    launch = int(os.environ.get("TINKER_RECOVERY_RESTARTS", "0") or 0)
    check_log_dir(log_path, config["behavior_if_exists"])

    service = tinker.ServiceClient(
        base_url=os.environ["TINKER_BASE_URL"], api_key=os.environ["TINKER_API_KEY"]
    )
    resume = last_checkpoint(log_path)
    if resume is not None:
        client = await service.create_training_client_from_state_with_optimizer(resume["state_path"])
        start_batch = int(resume["batch"])
        print(f"resuming from {resume['state_path']} at batch {start_batch}", flush=True)
    else:
        client = await service.create_lora_training_client(base_model=config["base_model"], rank=8)
        start_batch = 0
    if config["print_run_id"] == "true":
        print(f"training run {client.model_id}", flush=True)
    adam = types.AdamParams(learning_rate=float(config["learning_rate"]))
    rest = tinker.RestClient(base_url=os.environ["TINKER_BASE_URL"], api_key=os.environ["TINKER_API_KEY"])
    previous_rolling: list[str] = []
    pending: collections.deque[tuple[int, Any, Any]] = collections.deque()

    async def finish(batch: int, forward_backward: Any, optim: Any) -> None:
        result = await forward_backward
        await optim
        loss = float(result.metrics["loss:sum"])
        append_jsonl(
            log_path,
            "metrics.jsonl",
            {
                "launch": launch,
                "batch": batch,
                "loss": loss,
                "t": time.monotonic(),
                "run_id": client.model_id,
            },
        )
        print(f"batch {batch} loss {loss:.6f}", flush=True)
        name = f"{batch:06d}"
        if batch > 0 and save_every > 0 and batch % save_every == 0:
            state = await client.save_state(name, ttl_seconds=int(config["ttl_seconds"]))
            sampler = await client.save_weights_for_sampler(name, ttl_seconds=int(config["ttl_seconds"]))
            append_jsonl(
                log_path,
                CHECKPOINTS,
                {
                    "name": name,
                    "batch": batch,
                    "epoch": 0,
                    "final": False,
                    "state_path": state.path,
                    "sampler_path": sampler.path,
                    "elapsed_tokens": 9 * (batch + 1),
                },
            )
        elif batch > 0 and rolling_every > 0 and batch % rolling_every == 0:
            state = await client.save_state(name, ttl_seconds=int(config["rolling_ttl_seconds"]))
            append_jsonl(
                log_path,
                CHECKPOINTS,
                {
                    "name": name,
                    "batch": batch,
                    "epoch": 0,
                    "final": False,
                    "state_path": state.path,
                    "elapsed_tokens": 9 * (batch + 1),
                },
            )
            for old in previous_rolling:
                await rest.delete_checkpoint_from_tinker_path(old)
            previous_rolling[:] = [state.path]
        if batch == hold_after and launch == 0:
            print(f"holding after batch {batch}", flush=True)
            await asyncio.Event().wait()

    for batch in range(start_batch, n_batches):
        forward_backward = client.forward_backward(datums(types, batch), "cross_entropy")  # submitted at once
        optim = client.optim_step(adam)
        pending.append((batch, forward_backward, optim))
        if len(pending) > submit_ahead:
            await finish(*pending.popleft())
    while pending:
        await finish(*pending.popleft())
    final = await client.save_state("final")
    append_jsonl(
        log_path,
        CHECKPOINTS,
        {
            "name": "final",
            "batch": n_batches,
            "epoch": 1,
            "final": True,
            "state_path": final.path,
            "elapsed_tokens": 9 * n_batches,
        },
    )
    print("done", flush=True)


def run(argv: list[str]) -> int:
    try:
        config = parse(argv)
    except Usage as error:
        print(f"cookbook_style_sl: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(main(config))
    except Usage as error:
        print(f"cookbook_style_sl: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    except Exception as error:  # a training call failed: the cookbook's loop crashes the same way
        print(
            f"cookbook_style_sl: failed: {type(error).__name__}: {str(error)[:200]}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
