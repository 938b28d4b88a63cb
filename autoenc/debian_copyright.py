"""Each file's licence, read from a Debian package's machine-readable copyright file (DEP-5,
https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/).

The corpus builders use it where a package's files carry different licences (a game's
photographs: public domain by default, CC-BY-SA for named photographers), so every corpus file
is recorded with the licence its package states for it.

Rules followed: paragraphs are separated by blank lines; a ``Files:`` paragraph lists
whitespace-separated patterns (continuation lines start with a space) where ``*`` matches any
run of characters, ``/`` included, and ``?`` one character; the **last** paragraph whose pattern
matches a path wins; ``License:``'s first line is the short name, ``Copyright:`` may span lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FilesParagraph:
    patterns: tuple[str, ...]
    licence: str  # the short name on License:'s first line, e.g. "CC-BY-SA-4.0"
    copyright: str  # Copyright:, continuation lines joined with "; "


def _fields(paragraph: str) -> dict[str, str]:
    """Field name (lower case) -> value, continuation lines joined with newlines."""
    out: dict[str, str] = {}
    key = None
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") and key is not None:
            out[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            out[key] = value.strip()
    return out


def parse(text: str) -> list[FilesParagraph]:
    """The ``Files:`` paragraphs of a DEP-5 copyright file, in file order."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        f = _fields(paragraph)
        if "files" not in f:
            continue
        copyright_lines = [c for c in f.get("copyright", "").splitlines() if c and c != "."]
        out.append(FilesParagraph(tuple(f["files"].split()), f.get("license", "").split("\n")[0].strip(), "; ".join(copyright_lines)))
    return out


def _matches(pattern: str, path: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def licence_of(paragraphs: list[FilesParagraph], path: str) -> FilesParagraph | None:
    """The paragraph that governs ``path`` (relative to the package's source root): the last
    one with a matching pattern; None if none matches."""
    found = None
    for p in paragraphs:
        if any(_matches(pat, path) for pat in p.patterns):
            found = p
    return found


def read(path: Path) -> list[FilesParagraph]:
    """:func:`parse` of the copyright file at ``path``."""
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"))
