"""Protobuf bodies of FakeTinker, built with the official SDK's generated module ``tinker.proto``.

Only the official SDK sends and expects protobuf (``forward_backward`` requests; the results of
``forward_backward`` and ``asample``), so ``tinker`` is installed whenever these functions run; it
is imported on first use, never at import time, so FakeTinker serves JSON clients without it.
"""

from __future__ import annotations

import importlib
import math
from array import array
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import attrs

from ._model import Datum, Sampled, Tensor

__all__ = [
    "ForwardBackwardRequest",
    "ProtoError",
    "decode_forward_backward_request",
    "encode_forward_backward_output",
    "encode_sample_response",
]

_NUMPY_DTYPES = {"float32": "<f4", "int64": "<i8", "int32": "<i4"}


class ProtoError(ValueError):
    """The bytes are not a valid message of the expected type, or use what FakeTinker cannot serve."""


@attrs.frozen
class ForwardBackwardRequest:
    """A decoded ``tinker_public.ForwardBackwardRequest``."""

    model_id: str
    seq_id: int
    data: tuple[Datum, ...]
    loss_fn: str
    loss_fn_config: Mapping[str, float | str]
    forward_only: bool


def _pb() -> ModuleType:
    try:
        from tinker.proto import tinker_public_pb2
    except ImportError as exc:  # only the official SDK sends protobuf, and it ships this module
        raise ProtoError(f"protobuf bodies need the official tinker SDK installed ({exc})") from None
    return tinker_public_pb2


def _np() -> Any:
    import numpy  # a dependency of tinker, so present whenever _pb() is

    return numpy


def _dtype_name(pb: ModuleType, code: int) -> str:
    names = {pb.DTYPE_FLOAT32: "float32", pb.DTYPE_INT64: "int64", pb.DTYPE_INT32: "int32"}
    name = names.get(code)
    if name is None:
        raise ProtoError(f"tensor dtype {code} is not supported by FakeTinker")
    return name


def _tensor(pb: ModuleType, message: Any) -> Tensor:
    np = _np()
    dtype = _dtype_name(pb, message.dtype)
    shape = tuple(int(s) for s in message.shape)
    try:
        if message.HasField("sparse_csr"):
            csr = message.sparse_csr
            values = np.frombuffer(csr.values, dtype=_NUMPY_DTYPES[dtype])
            crow = np.frombuffer(csr.crow_indices, dtype="<i8")
            cols = np.frombuffer(csr.col_indices, dtype="<i8")
            width = shape[-1] if shape else (int(cols.max()) + 1 if len(cols) else 0)
            dense = np.zeros((max(len(crow) - 1, 0), width), dtype=_NUMPY_DTYPES[dtype])
            for row in range(len(crow) - 1):
                for k in range(int(crow[row]), int(crow[row + 1])):
                    dense[row, int(cols[k])] = values[k]
            flat = dense.reshape(-1)
        else:
            flat = np.frombuffer(message.dense, dtype=_NUMPY_DTYPES[dtype])
    except (ValueError, IndexError) as exc:
        raise ProtoError(f"malformed tensor: {exc}") from None
    converted = tuple(float(v) for v in flat) if dtype == "float32" else tuple(int(v) for v in flat)
    return Tensor(values=converted, dtype=dtype, shape=shape or (len(converted),))


def _datum(pb: ModuleType, message: Any) -> Datum:
    np = _np()
    tokens: list[int] = []
    for chunk in message.model_input:
        kind = chunk.WhichOneof("chunk")
        if kind != "encoded_text":
            raise ProtoError(f"model input chunks of type {kind!r} are not supported by FakeTinker")
        try:
            tokens.extend(int(t) for t in np.frombuffer(chunk.encoded_text.tokens, dtype="<i4"))
        except ValueError as exc:
            raise ProtoError(f"malformed tokens: {exc}") from None
    inputs = {name: _tensor(pb, tensor) for name, tensor in message.loss_fn_inputs.items()}
    return Datum(tokens=tuple(tokens), loss_fn_inputs=inputs)


def decode_forward_backward_request(body: bytes) -> ForwardBackwardRequest:
    """Parse a ``ForwardBackwardRequest``; ProtoError when it is not one or uses unsupported parts."""
    pb = _pb()
    decode_error: type[Exception] = importlib.import_module("google.protobuf.message").DecodeError
    message = pb.ForwardBackwardRequest()
    try:
        message.ParseFromString(body)
    except decode_error as exc:
        raise ProtoError(str(exc) or "not a ForwardBackwardRequest") from None
    config: dict[str, float | str] = {k: float(v) for k, v in message.loss_fn_config.items()}
    for key, value in message.loss_fn_config_v2.items():
        config[key] = value.text if value.WhichOneof("value") == "text" else float(value.number)
    return ForwardBackwardRequest(
        model_id=message.model_id,
        seq_id=message.seq_id,
        data=tuple(_datum(pb, datum) for datum in message.data),
        loss_fn=message.loss_fn,
        loss_fn_config=config,
        forward_only=message.forward_only,
    )


def encode_forward_backward_output(
    outputs: Sequence[Mapping[str, Tensor]], metrics: Mapping[str, float]
) -> bytes:
    """A ``ForwardBackwardOutput`` holding one batched ``ArrayRecord`` (float32 fields, one per datum)."""
    pb = _pb()
    message = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    for name, value in metrics.items():
        message.metrics[name] = float(value)
    record = message.loss_fn_outputs.add(num_datums=len(outputs))
    for name in outputs[0] if outputs else ():
        data, offsets = array("f"), array("q", [0])
        for output in outputs:
            data.extend(float(v) for v in output[name].values)
            offsets.append(len(data) * 4)
        batched = record.fields[name]
        batched.data, batched.offsets, batched.dtype = data.tobytes(), offsets.tobytes(), pb.DTYPE_FLOAT32
    return bytes(message.SerializeToString())


def encode_sample_response(sequences: Sequence[Sampled], prompt_logprobs: Sequence[float] | None) -> bytes:
    """A ``SampleResponse``: int32 tokens and float32 logprobs per sequence; NaN marks unscored
    prompt positions (the SDK shows them as None)."""
    pb = _pb()
    reasons = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}
    message = pb.SampleResponse()
    for sequence in sequences:
        message.sequences.add(
            stop_reason=reasons[sequence.stop_reason],
            tokens=array("i", sequence.tokens).tobytes(),
            logprobs=array("f", sequence.logprobs).tobytes(),
        )
    if prompt_logprobs is not None:
        message.prompt_logprobs = array(
            "f", (math.nan if math.isnan(v) else v for v in prompt_logprobs)
        ).tobytes()
    return bytes(message.SerializeToString())
