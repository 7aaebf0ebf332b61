"""Making text from a server or a user safe to print: one line, no control characters."""

from __future__ import annotations

__all__ = ["escape_text"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_text(value: object, limit: int | None = None) -> str:
    """``str(value)`` on one line: newlines, tabs, ESC and every other control or format character
    (Unicode categories Cc, Cf, Zl, Zp) are written as backslash escapes, so no server text can
    start a new log line or steer a terminal. ``limit``: at most that many characters are kept
    (``…`` marks a cut); None keeps everything."""
    import unicodedata

    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    escaped = "".join(out)
    if limit is not None and len(escaped) > limit:
        return escaped[: max(0, limit - 1)] + "…"
    return escaped
