"""A tiny protobuf wire codec for the forward_backward messages of the Tinker public API.

Only what FakeTinker needs: decode ``tinker_public.ForwardBackwardRequest`` (with its ``Datum``,
``Chunk``, ``EncodedTextChunk`` and ``Tensor``) and encode ``tinker_public.ForwardBackwardOutput``
(with ``ArrayRecord`` and ``BatchedTensor``); plus the two inverse functions, so tests and loopback
clients can speak the same messages without the ``protobuf`` package.

Field numbers follow the message definitions shipped in the official SDK (``tinker/proto``).
Unknown fields are skipped, as protobuf requires.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence

import attrs

__all__ = [
    "ProtoError",
    "Tensor",
    "Datum",
    "ForwardBackwardRequest",
    "ForwardBackwardOutput",
    "decode_forward_backward_request",
    "encode_forward_backward_request",
    "encode_forward_backward_output",
    "decode_forward_backward_output",
]

# tinker_public.DType
_DTYPE_CODES = {"float32": 1, "int64": 2, "int32": 3, "bfloat16": 4}
_DTYPE_NAMES = {code: name for name, code in _DTYPE_CODES.items()}
_STRUCT_CODES = {"float32": "f", "int64": "q", "int32": "i", "bfloat16": "H"}
_ITEM_SIZES = {"float32": 4, "int64": 8, "int32": 4, "bfloat16": 2}

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class ProtoError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


@attrs.frozen
class Tensor:
    """A dense tensor: flat ``values`` (floats or ints), ``dtype`` name and ``shape``."""

    values: tuple
    dtype: str
    shape: tuple[int, ...] = ()


@attrs.frozen
class Datum:
    """One training example: the concatenated text ``tokens`` and the named loss inputs."""

    tokens: tuple[int, ...]
    loss_fn_inputs: Mapping[str, Tensor]


@attrs.frozen
class ForwardBackwardRequest:
    """A decoded ``tinker_public.ForwardBackwardRequest``."""

    model_id: str
    seq_id: int
    data: tuple[Datum, ...]
    loss_fn: str
    loss_fn_config: Mapping[str, float | str]
    forward_only: bool


@attrs.frozen
class ForwardBackwardOutput:
    """A decoded ``tinker_public.ForwardBackwardOutput``: per-datum fields and metrics."""

    loss_fn_output_type: str
    loss_fn_outputs: tuple[Mapping[str, Tensor], ...]
    metrics: Mapping[str, float]


# --- primitives ---------------------------------------------------------------------------------


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)``; value is an int (varint) or raw bytes."""
    buf = memoryview(data)
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise ProtoError(f"field {number}: length {length} runs past the end")
            value = buf[pos : pos + length]
            pos += length
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            if pos + size > end:
                raise ProtoError(f"field {number}: truncated fixed-width value")
            value = buf[pos : pos + size]
            pos += size
        else:
            raise ProtoError(f"field {number}: unsupported wire type {wire_type}")
        yield number, wire_type, value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _text(value: int | memoryview, what: str) -> str:
    if not isinstance(value, memoryview):
        raise ProtoError(f"{what}: expected a length-delimited string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtoError(f"{what}: invalid UTF-8") from exc


def _need_bytes(value: int | memoryview, what: str) -> memoryview:
    if not isinstance(value, memoryview):
        raise ProtoError(f"{what}: expected a length-delimited field")
    return value


def _double(value: int | memoryview, what: str) -> float:
    if not isinstance(value, memoryview) or len(value) != 8:
        raise ProtoError(f"{what}: expected a 64-bit double")
    return struct.unpack("<d", value)[0]


def _unpack(raw: memoryview | bytes, dtype: str) -> tuple:
    size = _ITEM_SIZES[dtype]
    if len(raw) % size:
        raise ProtoError(f"{dtype} buffer of {len(raw)} bytes is not a whole number of items")
    values = struct.unpack(f"<{len(raw) // size}{_STRUCT_CODES[dtype]}", raw)
    if dtype == "bfloat16":  # the upper half of a float32
        return tuple(struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in values)
    return values


def _pack(values: Sequence, dtype: str) -> bytes:
    if dtype == "bfloat16":
        raise ProtoError("encoding bfloat16 is not supported")
    return struct.pack(f"<{len(values)}{_STRUCT_CODES[dtype]}", *values)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _str_field(number: int, text: str) -> bytes:
    return _len_field(number, text.encode("utf-8"))


def _double_field(number: int, value: float) -> bytes:
    return _tag(number, _FIXED64) + struct.pack("<d", value)


def _varint_field(number: int, value: int) -> bytes:
    return _tag(number, _VARINT) + _varint(value)


def _packed_int64(number: int, values: Sequence[int]) -> bytes:
    if not values:
        return b""
    return _len_field(number, b"".join(_varint(int(v)) for v in values))


def _read_int64s(wire_type: int, value: int | memoryview) -> list[int]:
    """A repeated int64 field element: packed (LEN) or a single varint."""
    if wire_type == _VARINT:
        return [_signed(value, 64)]  # type: ignore[arg-type]
    buf = _need_bytes(value, "repeated int64")
    out = []
    pos = 0
    while pos < len(buf):
        item, pos = _read_varint(buf, pos)
        out.append(_signed(item, 64))
    return out


# --- decoding the request -----------------------------------------------------------------------


def _decode_tensor(data: memoryview) -> Tensor:
    dense: memoryview | None = None
    csr: memoryview | None = None
    dtype_code = 0
    shape: list[int] = []
    for number, wire_type, value in _fields(data):
        if number == 1:
            dense = _need_bytes(value, "Tensor.dense")
        elif number == 2:
            csr = _need_bytes(value, "Tensor.sparse_csr")
        elif number == 3 and wire_type == _VARINT:
            dtype_code = value  # type: ignore[assignment]
        elif number == 4:
            shape.extend(_read_int64s(wire_type, value))
    dtype = _DTYPE_NAMES.get(dtype_code)
    if dtype is None:
        raise ProtoError(f"Tensor: unsupported dtype code {dtype_code}")
    if csr is not None:
        return Tensor(values=_densify_csr(csr, dtype, shape), dtype=dtype, shape=tuple(shape))
    return Tensor(values=_unpack(dense or b"", dtype), dtype=dtype, shape=tuple(shape))


def _densify_csr(data: memoryview, dtype: str, shape: list[int]) -> tuple:
    values: tuple = ()
    crow: tuple = ()
    cols: tuple = ()
    for number, _wire_type, value in _fields(data):
        if number == 1:
            values = _unpack(_need_bytes(value, "SparseCsr.values"), dtype)
        elif number == 2:
            crow = _unpack(_need_bytes(value, "SparseCsr.crow_indices"), "int64")
        elif number == 3:
            cols = _unpack(_need_bytes(value, "SparseCsr.col_indices"), "int64")
    if len(shape) == 1:
        rows, width = 1, shape[0]
    elif len(shape) == 2:
        rows, width = shape
    else:
        raise ProtoError(f"sparse tensor of shape {shape}: only 1-D and 2-D are supported")
    if len(crow) != rows + 1 or len(cols) != len(values) or (crow and crow[-1] != len(values)):
        raise ProtoError("inconsistent sparse CSR tensor")
    dense = [0] * (rows * width)
    for row in range(rows):
        for k in range(crow[row], crow[row + 1]):
            if not 0 <= cols[k] < width:
                raise ProtoError("sparse CSR column index out of range")
            dense[row * width + cols[k]] = values[k]
    return tuple(dense)


def _decode_chunk_tokens(data: memoryview) -> tuple[int, ...]:
    tokens: tuple[int, ...] = ()
    for number, _wire_type, value in _fields(data):
        if number == 1:  # encoded_text
            for inner_number, _inner_type, inner in _fields(_need_bytes(value, "Chunk.encoded_text")):
                if inner_number == 1:
                    tokens += _unpack(_need_bytes(inner, "EncodedTextChunk.tokens"), "int32")
        elif number in (2, 3):
            raise ProtoError("image and audio chunks are not supported by FakeTinker")
    return tokens


def _decode_map_entry(data: memoryview) -> tuple[str, int, int | memoryview | None]:
    key = ""
    value_type = -1
    value: int | memoryview | None = None
    for number, wire_type, item in _fields(data):
        if number == 1:
            key = _text(item, "map key")
        elif number == 2:
            value_type, value = wire_type, item
    return key, value_type, value


def _decode_datum(data: memoryview) -> Datum:
    tokens: tuple[int, ...] = ()
    inputs: dict[str, Tensor] = {}
    for number, _wire_type, value in _fields(data):
        if number == 1:
            tokens += _decode_chunk_tokens(_need_bytes(value, "Datum.model_input"))
        elif number == 2:
            key, _value_type, item = _decode_map_entry(_need_bytes(value, "Datum.loss_fn_inputs"))
            inputs[key] = _decode_tensor(_need_bytes(item if item is not None else b"", key))
    return Datum(tokens=tokens, loss_fn_inputs=inputs)


def decode_forward_backward_request(data: bytes) -> ForwardBackwardRequest:
    """Decode a ``tinker_public.ForwardBackwardRequest``. Raises ProtoError on bad input."""
    model_id = ""
    seq_id = 0
    datums: list[Datum] = []
    loss_fn = ""
    legacy_config: dict[str, float | str] = {}
    config: dict[str, float | str] = {}
    forward_only = False
    for number, wire_type, value in _fields(data):
        if number == 1:
            model_id = _text(value, "model_id")
        elif number == 2 and wire_type == _VARINT:
            seq_id = _signed(value, 32)  # type: ignore[arg-type]
        elif number == 3:
            datums.append(_decode_datum(_need_bytes(value, "data")))
        elif number == 4:
            loss_fn = _text(value, "loss_fn")
        elif number == 5:
            key, _value_type, item = _decode_map_entry(_need_bytes(value, "loss_fn_config"))
            legacy_config[key] = _double(item if item is not None else b"\0" * 8, key)
        elif number == 6 and wire_type == _VARINT:
            forward_only = bool(value)
        elif number == 7:
            key, _value_type, item = _decode_map_entry(_need_bytes(value, "loss_fn_config_v2"))
            config[key] = 0.0
            for inner_number, _inner_type, inner in _fields(_need_bytes(item or b"", key)):
                config[key] = _double(inner, key) if inner_number == 1 else _text(inner, key)
    return ForwardBackwardRequest(
        model_id=model_id,
        seq_id=seq_id,
        data=tuple(datums),
        loss_fn=loss_fn,
        loss_fn_config={**legacy_config, **config},
        forward_only=forward_only,
    )


# --- encoding the request (for tests and loopback clients) --------------------------------------


def _encode_tensor(tensor: Tensor) -> bytes:
    return (
        _len_field(1, _pack(tensor.values, tensor.dtype))
        + _varint_field(3, _DTYPE_CODES[tensor.dtype])
        + _packed_int64(4, tensor.shape)
    )


def encode_forward_backward_request(request: ForwardBackwardRequest) -> bytes:
    """Encode a ``tinker_public.ForwardBackwardRequest`` (text chunks, dense tensors)."""
    out = [_str_field(1, request.model_id), _varint_field(2, request.seq_id)]
    for datum in request.data:
        chunk = _len_field(1, _len_field(1, _pack(datum.tokens, "int32")))
        parts = [_len_field(1, chunk)]
        for name, tensor in datum.loss_fn_inputs.items():
            parts.append(_len_field(2, _str_field(1, name) + _len_field(2, _encode_tensor(tensor))))
        out.append(_len_field(3, b"".join(parts)))
    out.append(_str_field(4, request.loss_fn))
    for name, value in request.loss_fn_config.items():
        if isinstance(value, str):
            inner = _str_field(2, value)
        else:
            out.append(_len_field(5, _str_field(1, name) + _double_field(2, float(value))))
            inner = _double_field(1, float(value))
        out.append(_len_field(7, _str_field(1, name) + _len_field(2, inner)))
    if request.forward_only:
        out.append(_varint_field(6, 1))
    return b"".join(out)


# --- the output ---------------------------------------------------------------------------------


def encode_forward_backward_output(
    outputs: Sequence[Mapping[str, Tensor]],
    metrics: Mapping[str, float],
    loss_fn_output_type: str = "ArrayRecord",
) -> bytes:
    """Encode a ``tinker_public.ForwardBackwardOutput`` with one batched ArrayRecord.

    ``outputs`` holds one mapping per datum; every datum must have the same field names and each
    field the same dtype. A field's trailing shape is taken from its first datum's shape[1:].
    """
    out = [_str_field(1, loss_fn_output_type)]
    if outputs:
        record = []
        for name in outputs[0]:
            first = outputs[0][name]
            offsets = [0]
            blobs = []
            for datum in outputs:
                tensor = datum[name]
                if tensor.dtype != first.dtype:
                    raise ProtoError(f"field {name!r}: mixed dtypes")
                blob = _pack(tensor.values, tensor.dtype)
                blobs.append(blob)
                offsets.append(offsets[-1] + len(blob))
            batched = (
                _len_field(1, b"".join(blobs))
                + _len_field(2, _pack(offsets, "int64"))
                + _varint_field(3, _DTYPE_CODES[first.dtype])
                + _packed_int64(4, first.shape[1:])
            )
            record.append(_len_field(2, _str_field(1, name) + _len_field(2, batched)))
        record.append(_varint_field(3, len(outputs)))
        out.append(_len_field(2, b"".join(record)))
    for name, value in metrics.items():
        out.append(_len_field(3, _str_field(1, name) + _double_field(2, float(value))))
    return b"".join(out)


def _decode_batched(data: memoryview) -> tuple[list[Tensor], str]:
    raw: memoryview | bytes = b""
    offsets: tuple = ()
    dtype_code = 0
    trailing: list[int] = []
    for number, wire_type, value in _fields(data):
        if number == 1:
            raw = _need_bytes(value, "BatchedTensor.data")
        elif number == 2:
            offsets = _unpack(_need_bytes(value, "BatchedTensor.offsets"), "int64")
        elif number == 3 and wire_type == _VARINT:
            dtype_code = value  # type: ignore[assignment]
        elif number == 4:
            trailing.extend(_read_int64s(wire_type, value))
    dtype = _DTYPE_NAMES.get(dtype_code)
    if dtype is None:
        raise ProtoError(f"BatchedTensor: unsupported dtype code {dtype_code}")
    per_datum = []
    for start, end in zip(offsets, offsets[1:], strict=False):
        values = _unpack(raw[start:end], dtype)
        width = 1
        for dim in trailing:
            width *= dim
        per_datum.append(Tensor(values=values, dtype=dtype, shape=(len(values) // (width or 1), *trailing)))
    return per_datum, dtype


def decode_forward_backward_output(data: bytes) -> ForwardBackwardOutput:
    """Decode a ``tinker_public.ForwardBackwardOutput``. Raises ProtoError on bad input."""
    output_type = ""
    datums: list[dict[str, Tensor]] = []
    metrics: dict[str, float] = {}
    for number, _wire_type, value in _fields(data):
        if number == 1:
            output_type = _text(value, "loss_fn_output_type")
        elif number == 2:
            fields: dict[str, list[Tensor]] = {}
            num_datums = 0
            for inner_number, inner_type, inner in _fields(_need_bytes(value, "ArrayRecord")):
                if inner_number == 2:
                    key, _value_type, item = _decode_map_entry(_need_bytes(inner, "ArrayRecord.fields"))
                    fields[key], _dtype = _decode_batched(_need_bytes(item or b"", key))
                elif inner_number == 3 and inner_type == _VARINT:
                    num_datums = inner  # type: ignore[assignment]
            if not num_datums and fields:
                num_datums = len(next(iter(fields.values())))
            for i in range(num_datums):
                datums.append({name: tensors[i] for name, tensors in fields.items()})
        elif number == 3:
            key, _value_type, item = _decode_map_entry(_need_bytes(value, "metrics"))
            metrics[key] = _double(item if item is not None else b"\0" * 8, key)
    return ForwardBackwardOutput(
        loss_fn_output_type=output_type, loss_fn_outputs=tuple(datums), metrics=metrics
    )
