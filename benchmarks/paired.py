"""Paired comparisons of per-item benchmark scores: how far one method is ahead of another on
the same noisy inputs, and how sure that is.

A benchmark scores every method on the same items (crops of a few photos). The mean difference
is the number a target is judged on; its uncertainty comes from which photos happened to be in
the benchmark. Crops of one photo are not independent (they share its content and camera), so
the interval resamples whole photos (a cluster bootstrap), not crops: with five photos it is
wide, which is the honest answer to "is 0.03 dB a difference?".

    from paired import compare
    compare(ours, theirs, group=lambda item: item.rsplit("-", 1)[0])
"""

from __future__ import annotations

from typing import Callable

import numpy as np

RESAMPLES = 10_000  # bootstrap draws
CONFIDENCE = 0.95
SEED = 0  # the interval is reproducible: same scores, same interval


def compare(ours: dict[str, float], theirs: dict[str, float], group: Callable[[str], str] = lambda item: item, margin: float = 0.0) -> dict:
    """Paired difference ``ours - theirs`` (dB, or whatever unit the scores have) over the items
    both scored; items are resampled by ``group`` (the photo a crop came from). Returns

    - ``mean``: the mean difference over items (what a benchmark table's two means differ by);
    - ``ci``: [low, high], the CONFIDENCE interval of that mean from RESAMPLES cluster-bootstrap
      draws of whole groups (seeded);
    - ``groups``: the mean difference per group; ``ahead``: how many groups are above ``margin``;
    - ``margin`` and ``met``: whether the mean reaches ``margin`` (a target such as +0.2 dB);
    - ``sure``: whether the whole interval lies at or above ``margin``.

    Raises ValueError when the two share no item."""
    items = sorted(set(ours) & set(theirs))
    if not items:
        raise ValueError("the two methods scored no item in common")
    diff = {i: float(ours[i]) - float(theirs[i]) for i in items}
    names = sorted({group(i) for i in items})
    sums = np.array([sum(d for i, d in diff.items() if group(i) == g) for g in names])
    counts = np.array([sum(1 for i in diff if group(i) == g) for g in names], dtype=float)
    mean = float(sums.sum() / counts.sum())
    draws = np.random.default_rng(SEED).integers(0, len(names), size=(RESAMPLES, len(names)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)  # mean over the items of the drawn groups
    tail = (1 - CONFIDENCE) / 2
    low, high = (float(v) for v in np.quantile(boot, [tail, 1 - tail]))
    per_group = {g: float(s / c) for g, s, c in zip(names, sums, counts)}
    return {
        "mean": mean,
        "ci": [low, high],
        "groups": per_group,
        "ahead": int(sum(v > margin for v in per_group.values())),
        "margin": margin,
        "met": mean >= margin,
        "sure": low >= margin,
    }


def describe(result: dict) -> str:
    """One table cell: ``+0.45 [+0.31, +0.60] 5/5`` (mean, interval, groups ahead of the margin)."""
    low, high = result["ci"]
    return f"{result['mean']:+.3f} [{low:+.2f}, {high:+.2f}] {result['ahead']}/{len(result['groups'])}"


def verdict(result: dict) -> tuple[str, str]:
    """The target and met cells of a table row for ``result`` with its ``target`` (None: no
    target for that row, two empty cells): ``("+0.2", "yes (whole interval)")``."""
    if result.get("target") is None:
        return "", ""
    return f"{result['target']:+.1f}", ("yes" if result["met"] else "no") + (" (whole interval)" if result["sure"] else "")
