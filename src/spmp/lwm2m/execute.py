"""Execute arguments (TS Core §5.4.5): ``0,1='on',7='text with spaces'``.

Grammar: ``arglist = arg *("," arg)``, ``arg = DIGIT ["=" "'" *CHAR "'"]`` where CHAR is any printable
US-ASCII character except the single quote. An empty payload means no arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

from spmp.lwm2m.response import bad_request


def parse_arguments(payload: bytes) -> dict[int, str | None]:
    """Arguments by digit; a digit without a value maps to None. Raises OperationError (4.00)."""
    if not payload:
        return {}
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise bad_request("execute arguments must be US-ASCII") from None
    arguments: dict[int, str | None] = {}
    position = 0
    length = len(text)
    while True:
        if position >= length or not text[position].isdigit():
            raise bad_request(f"execute arguments: expected a digit at offset {position}")
        digit = int(text[position])
        if digit in arguments:
            raise bad_request(f"execute arguments: argument {digit} appears twice")
        position += 1
        value: str | None = None
        if position < length and text[position] == "=":
            if position + 1 >= length or text[position + 1] != "'":
                raise bad_request(f"execute arguments: expected a quoted value at offset {position + 1}")
            end = text.find("'", position + 2)
            if end < 0:
                raise bad_request(f"execute arguments: unterminated value starting at offset {position + 1}")
            value = text[position + 2 : end]
            if any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
                raise bad_request("execute arguments: values must be printable characters")
            position = end + 1
        arguments[digit] = value
        if position == length:
            return arguments
        if text[position] != ",":
            raise bad_request(f"execute arguments: expected ',' at offset {position}")
        position += 1


def format_arguments(arguments: Mapping[int, str | None]) -> bytes:
    parts: list[str] = []
    for digit, value in sorted(arguments.items()):
        if not 0 <= digit <= 9:
            raise bad_request(f"execute argument number {digit} is not a single digit")
        if value is None:
            parts.append(str(digit))
            continue
        if "'" in value or any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
            raise bad_request(f"execute argument {digit} must be printable ASCII without quotes")
        parts.append(f"{digit}='{value}'")
    return ",".join(parts).encode("ascii")
