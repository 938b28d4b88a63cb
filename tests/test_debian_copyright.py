"""DEP-5 copyright files: the paragraph that governs a path is the last one that matches."""

from __future__ import annotations

from autoenc.debian_copyright import licence_of, parse

TEXT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: game

Files: *
Copyright: Jane Doe <jane@example.org>
License: GPL-3+

Files: images/*
Copyright: Jane Doe
License: CC-BY-SA-4.0

Files: images/land/*
Copyright: Various
License: public-domain
 Taken from a public-domain collection.
 .
 (Exceptions noted below.)

Files:
 images/land/city4*
 images/land/beach?.jpg
Copyright: 2015 A. Photographer
 2016 B. Photographer
License: CC0-1.0

License: GPL-3+
 The full text of the GPL.
"""


def test_last_matching_paragraph_wins_and_fields_span_lines() -> None:
    paragraphs = parse(TEXT)
    assert [p.licence for p in paragraphs] == ["GPL-3+", "CC-BY-SA-4.0", "public-domain", "CC0-1.0"]  # the stand-alone License paragraph is not a Files one
    assert licence_of(paragraphs, "src/main.cpp").licence == "GPL-3+"
    assert licence_of(paragraphs, "images/ship.png").licence == "CC-BY-SA-4.0"
    assert licence_of(paragraphs, "images/land/sea0@2x.jpg").licence == "public-domain"
    city = licence_of(paragraphs, "images/land/city4@2x.jpg")
    assert city.licence == "CC0-1.0" and city.copyright == "2015 A. Photographer; 2016 B. Photographer"
    assert licence_of(paragraphs, "images/land/beach1.jpg").licence == "CC0-1.0"  # ? is one character
    assert licence_of(paragraphs, "images/land/beach12.jpg").licence == "public-domain"
    assert licence_of(paragraphs, "images/land/city4.png").licence == "CC0-1.0"  # * spans any characters


def test_no_match_is_none_and_patterns_are_literal_otherwise() -> None:
    paragraphs = parse("Files: docs/a+b(1).txt\nCopyright: X\nLicense: MIT\n")
    assert licence_of(paragraphs, "docs/a+b(1).txt").licence == "MIT"
    assert licence_of(paragraphs, "docs/aab(1).txt") is None
    assert licence_of(parse(""), "anything") is None
