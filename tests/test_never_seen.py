"""The benchmarks' check that a model never trained on their files (benchmarks/never_seen.py):
a model whose record holds a benchmark file's content is refused before any score, and one
without a record is scored with that said."""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import their siblings by name

from never_seen import check  # noqa: E402

from autoenc.runtime import trained_on  # noqa: E402
from autoenc.runtime.session import model_info  # noqa: E402


def test_a_model_that_trained_on_a_benchmark_file_is_refused_by_content(tmp_path) -> None:
    files = []
    for i in range(3):
        files.append(tmp_path / f"bench{i}.png")
        files[-1].write_bytes(bytes([i]) * 100)
    plain = model_info("photo-fast")  # shipped before records: nothing to check, and said so
    assert check({"photo-fast": plain}, files) == {"photo-fast": trained_on.describe(None)}
    other = trained_on.record([hashlib.sha256(b"something else").hexdigest()], "h", {})
    assert "1 training files over 1 stage(s)" in check({"m": dataclasses.replace(plain, trained_on=other)}, files)["m"]
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(files[1].read_bytes())  # a training file of the same content under another name
    saw = trained_on.record([trained_on.file_digest(renamed)], "h", {"start.pt": other})
    with pytest.raises(SystemExit, match=r"m trained on 1 of this benchmark's files \(bench1.png\)"):
        check({"m": dataclasses.replace(plain, trained_on=saw)}, files)
