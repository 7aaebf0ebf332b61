"""An RL-style loop that samples from its own weights and survives a corrupted run, with the official SDK.

    python examples/rl_sampling_loop.py [--steps 9] [--save-every 3] [--corrupt-at 7]

It runs against a local FakeTinker (no API key, no network). Each step samples completions of a fixed
prompt from a sampling client, scores them (the reward: the share of even token ids), and trains on them
weighted by reward (``forward_backward`` with ``cross_entropy`` and per-token weights, then
``optim_step``). Every ``--save-every`` steps it saves the training state and the sampler weights under
the same ``step-NNNNNN`` name and samples from the new sampler weights from then on.

Before step ``--corrupt-at`` the run is marked corrupted on the server. After the recovery the loop
takes a sampling client for the restored weights with ``Recovery.sampling_client(from_checkpoint=True)``
(the sampler weights saved with the restored checkpoint, ``Recovery.sampler_path``). It checks that
this sampler gives exactly the log-probabilities recorded at that checkpoint before the corruption,
and that every step's loss equals the loss of an uninterrupted run (so no step was lost, and the
samples after the recovery came from the restored weights).
Exit status: 0 verified, 1 failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

import tinker_recovery as tr
from tinker_recovery.examples._common import (
    Deadline,
    ExampleFailed,
    StepLedger,
    adam_params,
    checkpoint_name,
    demo_policy,
    import_tinker,
    wait_for_recovery,
)
from tinker_recovery.testing import FakeTinker

BASE_MODEL = "Qwen/Qwen3-8B"
PROMPT = [1, 2, 3]
PROBE = [1, 2, 3, 4, 5, 6]  # a fixed sequence whose log-probabilities identify the sampler's weights


def reward(tokens: list[int]) -> float:
    """The share of even token ids: a toy reward in [0, 1]."""
    return sum(1 for token in tokens if token % 2 == 0) / len(tokens)


def rl_step(client: Any, sampler: Any, step: int, adam: Any) -> float:
    """Sample 4 completions (seeded by ``step``), train on them weighted by reward; return the loss."""
    types = import_tinker().types
    prompt = types.ModelInput.from_ints(PROMPT)
    params = types.SamplingParams(max_tokens=4, seed=step)
    sequences = sampler.sample(prompt, 4, params).result().sequences
    datums = []
    for sequence in sequences:
        tokens = PROMPT + list(sequence.tokens)
        weight = reward(list(sequence.tokens))
        datums.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "weights": [0.0] * (len(PROMPT) - 1) + [weight] * len(sequence.tokens),
                },
            )
        )
    futures = [client.forward_backward(datums, "cross_entropy"), client.optim_step(adam)]
    results, errors = [], []
    for future in futures:  # read both, so no failed future is left unread
        try:
            results.append(future.result())
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]
    return float(results[0].metrics["loss:sum"])


def probe(sampler: Any) -> list[float | None]:
    return list(sampler.compute_logprobs(import_tinker().types.ModelInput.from_ints(PROBE)).result())


def train(
    service: Any,
    handle: tr.RunHandle | None,
    client: Any,
    args: argparse.Namespace,
    ledger: StepLedger,
    corrupt: Any = None,
) -> dict[str, list[float | None]]:
    """The loop; returns the probe log-probabilities recorded at each checkpoint name."""
    tinker = import_tinker()
    adam = adam_params()
    sampler = client.save_weights_and_get_sampling_client(checkpoint_name(0)).result()
    probes = {checkpoint_name(0): probe(sampler)}
    timings: dict[str, float] = {}
    step = 0
    while step < args.steps:
        recovery = handle.take_recovery() if handle is not None else None
        if recovery is not None:
            if recovery.step is None or recovery.sampler_path is None:
                raise ExampleFailed(
                    f"restored {recovery.checkpoint.tinker_path}: step {recovery.step}, "
                    f"sampler path {recovery.sampler_path}"
                )
            client, step = recovery.client, recovery.step
            sampler = recovery.sampling_client(from_checkpoint=True)  # the checkpoint's sampler weights
            if probe(sampler) != probes[checkpoint_name(step)]:
                raise ExampleFailed(
                    f"{recovery.sampler_path} does not sample like {checkpoint_name(step)} did"
                )
            ledger.restored(step)
            print(
                f"recovered from {recovery.checkpoint.tinker_path}; sampling from {recovery.sampler_path}; "
                f"resuming at step {step}",
                flush=True,
            )
        if corrupt is not None and corrupt(step):
            timings["corrupted_at"] = time.monotonic()
        try:
            loss = rl_step(client, sampler, step, adam)
        except tinker.RequestFailedError:
            assert handle is not None
            print(f"step {step:3d}  refused", flush=True)
            # healthy, and not already recovered meanwhile (then handle.client is the new client)
            if not handle.check() and client is handle.client:
                raise
            wait_for_recovery(handle, Deadline(args.timeout))
            continue
        if "corrupted_at" in timings and "to_next_step_s" not in timings:
            timings["to_next_step_s"] = time.monotonic() - timings["corrupted_at"]
            print(
                f"          corruption -> next successful step: {timings['to_next_step_s']:.3f} s "
                f"(poll interval {args.poll_interval_ms} ms)",
                flush=True,
            )
        ledger.applied(step, loss)
        print(f"step {step:3d}  loss {loss:.6f}", flush=True)
        step += 1
        if step % args.save_every == 0:
            name = checkpoint_name(step)
            client.save_state(name).result()
            sampler_path = client.save_weights_for_sampler(name).result().path
            sampler = service.create_sampling_client(model_path=sampler_path).result()
            probes[name] = probe(sampler)
            print(f"          saved {name} (state and sampler weights)", flush=True)
    return probes


def run(args: argparse.Namespace) -> None:
    tinker = import_tinker()
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeTinker())
        service = stack.enter_context(tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key))
        training_client = service.create_lora_training_client(base_model=BASE_MODEL, rank=8).result()
        executor = stack.enter_context(tr.Executor())
        monitor = stack.enter_context(
            tr.Monitor(executor, demo_policy(poll_interval_ms=args.poll_interval_ms))
        )
        handle = monitor.monitor_run(training_client.model_id, service, training_client=training_client)
        corrupted: list[str] = []

        def corrupt(step: int) -> bool:
            if step != args.corrupt_at or corrupted:
                return False
            fake.corrupt(handle.run_id)
            corrupted.append(handle.run_id)
            print(f"          (run {handle.run_id} marked corrupted on the server)", flush=True)
            return True

        ledger = StepLedger()
        train(service, handle, training_client, args, ledger, corrupt)
        if handle.recovery_count != 1:
            raise ExampleFailed(f"expected one recovery, saw {handle.recovery_count}")
        reference_ledger = StepLedger()
        reference_client = service.create_lora_training_client(base_model=BASE_MODEL, rank=8).result()
        train(service, None, reference_client, args, reference_ledger)
    problems = ledger.problems(args.steps, [loss for _, loss in reference_ledger.history])
    if problems:
        raise ExampleFailed("; ".join(problems))
    repeated = list(range(ledger.restored_at or 0, args.corrupt_at))
    print(
        f"verified: steps 0..{args.steps - 1} applied once each, with an uninterrupted run's losses; "
        f"after the recovery the loop sampled from the restored checkpoint's sampler weights; "
        f"steps {repeated} ran twice, sampling included "
        f"(after {checkpoint_name(ledger.restored_at or 0)}, lost with the corrupted run)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python examples/rl_sampling_loop.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--save-every", type=int, default=3, metavar="K")
    parser.add_argument("--corrupt-at", type=int, default=7, metavar="STEP")
    parser.add_argument("--poll-interval-ms", type=int, default=1000, metavar="MS")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S")
    args = parser.parse_args(argv)
    if (
        args.save_every < 1
        or args.timeout <= 0
        or args.poll_interval_ms < 100
        or not args.save_every <= args.corrupt_at < args.steps
    ):
        parser.error(
            "need --save-every >= 1, --timeout > 0, --poll-interval-ms >= 100 "
            "and --save-every <= --corrupt-at < --steps"
        )
    try:
        run(args)
    except ExampleFailed as error:
        print(f"rl_sampling_loop: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
