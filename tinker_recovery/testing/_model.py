"""The tiny, deterministic model behind each fake training run.

A bigram table of logits over hashed token ids (``VOCAB`` buckets): the logits for the token after
``t`` are row ``bucket(t)``. Pure Python (``array('d')``), trained with AdamW. Every operation runs
in a fixed order, so the same inputs always give bit-identical losses.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Mapping, Sequence

import attrs

from ._proto import Datum, Tensor

__all__ = ["VOCAB", "bucket", "Snapshot", "AdamParams", "BigramModel", "LossError", "initial_snapshot"]

VOCAB = 64
_SIZE = VOCAB * VOCAB
_SUPPORTED_LOSSES = ("cross_entropy", "importance_sampling")


class LossError(ValueError):
    """The datums do not fit the loss function (missing or mis-sized inputs, unknown loss)."""


def bucket(token: int) -> int:
    """Map any token id to one of ``VOCAB`` buckets (multiplicative hashing)."""
    return ((int(token) * 2654435761) & 0xFFFFFFFF) % VOCAB


@attrs.frozen(eq=False)
class Snapshot:
    """The whole training state at one moment; never mutated after creation.

    ``exp_avg``/``exp_avg_sq`` are None for a fresh optimizer (all-zero moments).
    """

    weights: array
    exp_avg: array | None = None
    exp_avg_sq: array | None = None
    step: int = 0

    @property
    def size_bytes(self) -> int:
        moments = 0 if self.exp_avg is None else 2 * len(self.exp_avg) * 8
        return len(self.weights) * 8 + moments


@attrs.frozen
class AdamParams:
    """AdamW hyper-parameters, as sent in ``optim_step``; ``grad_clip_norm`` 0 means no clipping."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping | None) -> AdamParams:
        data = data or {}
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: float(v) for k, v in data.items() if k in fields and v is not None})


def initial_snapshot(seed: int) -> Snapshot:
    """Small uniform weights drawn from ``random.Random(seed)``; fresh optimizer."""
    rng = random.Random(seed)
    return Snapshot(weights=array("d", (rng.uniform(-0.1, 0.1) for _ in range(_SIZE))))


class BigramModel:
    """The mutable state of one run: weights, AdamW moments and step, and pending gradients.

    Not thread-safe: the caller serialises access.
    """

    def __init__(self, snapshot: Snapshot, *, optimizer: bool = True) -> None:
        self._weights = array("d", snapshot.weights)
        keep = optimizer and snapshot.exp_avg is not None and snapshot.exp_avg_sq is not None
        self._exp_avg = array("d", snapshot.exp_avg) if keep else None
        self._exp_avg_sq = array("d", snapshot.exp_avg_sq) if keep else None
        self._step = snapshot.step if optimizer else 0
        self._grad: array | None = None

    @property
    def step(self) -> int:
        return self._step

    def snapshot(self) -> Snapshot:
        """Copy the weights and optimizer state (pending gradients are not part of it)."""
        return Snapshot(
            weights=array("d", self._weights),
            exp_avg=None if self._exp_avg is None else array("d", self._exp_avg),
            exp_avg_sq=None if self._exp_avg_sq is None else array("d", self._exp_avg_sq),
            step=self._step,
        )

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        *,
        forward_only: bool = False,
    ) -> tuple[float, list[dict[str, Tensor]]]:
        """Return the summed loss and per-datum ``logprobs``; accumulate gradients unless forward_only.

        ``cross_entropy`` uses ``target_tokens`` and optional ``weights`` (default 1);
        ``importance_sampling`` uses ``target_tokens``, ``logprobs`` (the sampler's) and ``advantages``.
        Raises LossError when an input is missing or has the wrong length.
        """
        if loss_fn not in _SUPPORTED_LOSSES:
            raise LossError(f"loss_fn {loss_fn!r} is not supported by FakeTinker; use {_SUPPORTED_LOSSES}")
        prepared = [_prepare(datum, loss_fn, index) for index, datum in enumerate(data)]
        weights = self._weights
        if not forward_only and self._grad is None:
            self._grad = array("d", bytes(8 * _SIZE))
        grad = self._grad
        total = 0.0
        outputs = []
        for tokens, targets, coefs, old_logprobs in prepared:
            logprobs = []
            for i, token in enumerate(tokens):
                base = bucket(token) * VOCAB
                row = weights[base : base + VOCAB]
                peak = max(row)
                exps = [math.exp(x - peak) for x in row]
                norm = sum(exps)
                target = bucket(targets[i])
                logprob = row[target] - peak - math.log(norm)
                logprobs.append(logprob)
                if old_logprobs is None:  # cross-entropy: loss = -w * logprob
                    dloss = -coefs[i]
                    total += dloss * logprob
                else:  # importance sampling: loss = -advantage * exp(logprob - old); d/dlogprob = loss
                    dloss = -coefs[i] * math.exp(logprob - old_logprobs[i])
                    total += dloss
                if forward_only or dloss == 0.0:
                    continue
                for j in range(VOCAB):  # d logprob / d logit_j = [j == target] - p_j
                    grad[base + j] -= dloss * exps[j] / norm
                grad[base + target] += dloss
            outputs.append(
                {"logprobs": Tensor(values=tuple(logprobs), dtype="float32", shape=(len(logprobs),))}
            )
        return total, outputs

    def optim_step(self, params: AdamParams) -> dict[str, float]:
        """Apply one AdamW step with the pending gradients (zero if none), then clear them."""
        grad = self._grad if self._grad is not None else array("d", bytes(8 * _SIZE))
        self._grad = None
        grad_norm = math.sqrt(math.fsum(g * g for g in grad))
        scale = 1.0
        if params.grad_clip_norm > 0.0 and grad_norm > params.grad_clip_norm:
            scale = params.grad_clip_norm / grad_norm
        if self._exp_avg is None or self._exp_avg_sq is None:
            self._exp_avg = array("d", bytes(8 * _SIZE))
            self._exp_avg_sq = array("d", bytes(8 * _SIZE))
        self._step += 1
        lr, beta1, beta2, eps = params.learning_rate, params.beta1, params.beta2, params.eps
        correction1 = 1.0 - beta1**self._step
        correction2 = 1.0 - beta2**self._step
        decay = 1.0 - lr * params.weight_decay
        weights, exp_avg, exp_avg_sq = self._weights, self._exp_avg, self._exp_avg_sq
        for i in range(_SIZE):
            g = grad[i] * scale
            m = exp_avg[i] = beta1 * exp_avg[i] + (1.0 - beta1) * g
            v = exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g
            weights[i] = weights[i] * decay - lr * (m / correction1) / (math.sqrt(v / correction2) + eps)
        return {"grad_norm:mean": grad_norm, "learning_rate:mean": lr}


def _values(datum: Datum, name: str, index: int, length: int, default: float | None = None) -> tuple:
    tensor = datum.loss_fn_inputs.get(name)
    if tensor is None:
        if default is None:
            raise LossError(f"datum {index}: loss_fn_inputs[{name!r}] is missing")
        return (default,) * length
    if len(tensor.values) != length:
        raise LossError(
            f"datum {index}: loss_fn_inputs[{name!r}] has {len(tensor.values)} values for {length} tokens"
        )
    return tensor.values


def _prepare(datum: Datum, loss_fn: str, index: int) -> tuple[tuple, tuple, tuple, tuple | None]:
    length = len(datum.tokens)
    targets = _values(datum, "target_tokens", index, length)
    if loss_fn == "cross_entropy":
        return datum.tokens, targets, _values(datum, "weights", index, length, 1.0), None
    advantages = _values(datum, "advantages", index, length)
    return datum.tokens, targets, advantages, _values(datum, "logprobs", index, length)
