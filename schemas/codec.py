"""Fast JSON codecs for wire messages (msgspec; one encoder, one decoder per type, reused)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}

DecodeError = msgspec.DecodeError  # also raised for validation failures (ValidationError subclass)


def encode(msg: msgspec.Struct) -> bytes:
    return _ENCODER.encode(msg)


def decoder(cls: type[T]) -> msgspec.json.Decoder[T]:
    dec = _DECODERS.get(cls)
    if dec is None:
        dec = msgspec.json.Decoder(cls)
        _DECODERS[cls] = dec
    return dec


def decode(data: bytes | str, cls: type[T]) -> T:
    return decoder(cls).decode(data)


def to_dict(msg: msgspec.Struct) -> dict[str, Any]:
    return msgspec.structs.asdict(msg)
