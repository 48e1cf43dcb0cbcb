"""Text that came from a guest or another host, made safe to show anywhere: the one function for it.

A student is root in their guest and a remote hypervisor is someone else's machine: what they
print reaches root's terminal (error messages, the summary table), report.json, junit.xml and
later a web page. A terminal acts on escape sequences (`\\x1b]0;…\\x07` retitles the window,
`\\x1b[2J` clears it, `\\x9b` is a one-byte CSI), bidi overrides reorder what is read, and XML 1.0
forbids most C0 characters even as character references (one systemd-coloured console line,
`\\x1b[0;32m  OK`, made a junit.xml unparseable). `printable` replaces every such character by a
visible escape (`\\x1b`, `\\u202e`) instead of dropping it, so a teacher still sees what the guest
sent; the result is plain printable text, valid in XML 1.0 and JSON, and inert in a terminal.
A web page escapes it for HTML as usual (`<`, `&`) after this.
"""

from __future__ import annotations

import json
import unicodedata

_LINE_BREAKS = "\n"  # kept in multi-line text (an error's console tail); \r is escaped: it overwrites a terminal line


def _escape(c: str) -> str:
    if c == "\r":
        return "\\r"
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown(c: str) -> bool:
    """Printable, or a plain space of another width (U+3000 in Chinese output): nothing a terminal or an XML parser acts on."""
    return c.isprintable() or unicodedata.category(c) == "Zs"


def printable(text: object, *, one_line: bool = False) -> str:
    """`text` with every control, format (bidi), separator, surrogate or unassigned character
    shown as a Python-style escape; line breaks and tabs are kept, or become spaces when `one_line`.

    Idempotent (its output only holds printable characters), so a message escaped where it was
    made passes every later output unchanged.
    """
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():
        return text
    out = []
    for c in text:
        if _shown(c):
            out.append(c)
        elif c in "\t\n\r" and one_line:
            out.append(" ")
        elif c == "\t" or c in _LINE_BREAKS:
            out.append(c)
        else:
            out.append(_escape(c))
    return "".join(out)


def printable_data(value: object) -> object:
    """Every string in a JSON-like value (dict keys too) through `printable`; numbers, booleans and None unchanged."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k) if isinstance(k, str) else k: printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value


def _json_escape(c: str) -> str:
    code = ord(c)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"  # a surrogate pair, as JSON spells one


def printable_json(value: object, *, indent: int | None = None) -> str:
    """JSON text of `value` that holds printable characters only (and the newlines of `indent`):
    every character `printable` would escape is written as a JSON escape (\\u001b, \\u202e), so the
    file is inert in a terminal and valid UTF-8 (a lone surrogate too), and it reads back as exactly
    the same data. For what must stay as it was (evidence a judge reads again, a student's answer);
    `printable_data` is for what is only shown.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)  # C0 characters are escaped already
    return "\n".join(line if line.isprintable() else "".join(c if _shown(c) else _json_escape(c) for c in line) for line in text.split("\n"))
