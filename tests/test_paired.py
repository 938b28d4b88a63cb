"""The benchmarks' paired comparison (benchmarks/paired.py): the mean difference, the interval
that resamples whole photos, the per-photo count and the target verdicts."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import their siblings by name

from paired import compare, describe, verdict  # noqa: E402


def photo(crop: str) -> str:
    return crop.rsplit("-", 1)[0]


def test_mean_is_the_difference_of_the_two_means_and_groups_are_photos() -> None:
    theirs = {f"p{k}-{i}": 30.0 + k + i for k in range(4) for i in range(4)}
    ours = {n: v + (0.45 if n.startswith("p0") else 0.1) for n, v in theirs.items()}
    r = compare(ours, theirs, group=photo, margin=0.2)
    assert r["mean"] == pytest.approx((0.45 + 3 * 0.1) / 4)
    assert r["groups"] == pytest.approx({"p0": 0.45, "p1": 0.1, "p2": 0.1, "p3": 0.1})
    assert r["ahead"] == 1  # one photo above the +0.2 margin
    assert r["met"] is False and r["sure"] is False  # a mean of 0.1875 misses the +0.2 target
    low, high = r["ci"]
    assert 0.1 - 1e-9 <= low < r["mean"] < high <= 0.45 + 1e-9  # resampled photo means stay within the photos'


def test_the_interval_resamples_photos_not_crops() -> None:
    """Forty crops of two photos are two observations: one photo ahead and one behind gives an
    interval that straddles zero however many crops each has."""
    theirs = {f"{p}-{i}": 30.0 for p in ("a", "b") for i in range(20)}
    ours = {n: 30.0 + (0.3 if n.startswith("a") else -0.1) for n in theirs}
    r = compare(ours, theirs, group=photo)
    assert r["mean"] == pytest.approx(0.1)
    assert r["ci"][0] == pytest.approx(-0.1) and r["ci"][1] == pytest.approx(0.3)
    assert r["met"] is True and r["sure"] is False
    by_crop = compare(ours, theirs)  # each crop its own group: a much narrower interval
    assert by_crop["ci"][1] - by_crop["ci"][0] < 0.5 * (r["ci"][1] - r["ci"][0])


def test_sure_when_every_photo_is_ahead_and_reproducible() -> None:
    theirs = {f"p{k}-{i}": 28.0 + 0.3 * i for k in range(5) for i in range(4)}
    ours = {n: v + 0.4 + 0.05 * int(n[1]) for n, v in theirs.items()}
    r = compare(ours, theirs, group=photo, margin=0.2)
    assert r["met"] and r["sure"] and r["ahead"] == 5
    assert compare(ours, theirs, group=photo, margin=0.2) == r  # seeded
    assert describe(r).startswith("+0.500 [+0.4")  # mean and interval, then photos ahead
    assert describe(r).endswith("5/5")


def test_only_common_items_count_and_none_is_an_error() -> None:
    assert compare({"a-0": 31.0, "a-1": 32.0}, {"a-0": 30.0})["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no item in common"):
        compare({"a-0": 1.0}, {"b-0": 1.0})


def test_verdict_cells() -> None:
    r = compare({"a-0": 31.0, "b-0": 31.0}, {"a-0": 30.0, "b-0": 30.5}, group=photo, margin=0.2)
    assert verdict({**r, "target": 0.2}) == ("+0.2", "yes (whole interval)")
    assert verdict({**r, "target": None}) == ("", "")
    assert verdict({**compare({"a-0": 30.0}, {"a-0": 30.5}), "target": 0.0}) == ("+0.0", "no")
