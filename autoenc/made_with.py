"""The config and data a trained model was made with, for work on it after training (its int8
twin): from the checkpoint it was exported from (whose run folder
holds the manifest), or from the training config it was made with, whose data is ingested again
(a shipped model whose run folder is gone). Either way the config hash must be the model's.
Needs the ``train`` extra (the data pipeline imports torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from autoenc.runtime.metadata import ModelInfo

if TYPE_CHECKING:
    from autoenc.config import RunConfig
    from autoenc.data import TrainingData

log = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yaml", ".yml")  # a source that is a training config, not a checkpoint


def _data_root(cfg: RunConfig) -> Path:
    from autoenc.corpus import resolve_data_root

    return resolve_data_root(cfg.data.root, cfg.data.corpus_dir, cfg.modality, cfg.data.corpus)


def run_data(checkpoint: str | Path, ckpt: dict) -> TrainingData:
    """The run's data for checkpoint dict ``ckpt`` read from ``checkpoint``: its training split
    and held-out pairs, from the manifest in the checkpoint's folder."""
    from autoenc.config import from_dict
    from autoenc.data import TrainingData, read_manifest

    cfg = from_dict(ckpt["config"], source=str(checkpoint))
    return TrainingData(cfg, _data_root(cfg), read_manifest(Path(checkpoint).parent / "manifest.csv"))


def config_data(cfg: RunConfig, manifest: Path) -> TrainingData:
    """The data of a training config ingested again (manifest written to ``manifest``), for a
    model whose run folder is gone (a shipped model made from the config); ingest logs the
    split's file counts, to compare with the model card's."""
    from autoenc.data import TrainingData, ingest

    root = _data_root(cfg)  # once: for the default corpora it checks (and builds) the corpus
    return TrainingData(cfg, root, ingest(root, cfg.data, manifest, cfg.modality))


def is_config(source: str | Path) -> bool:
    """Whether ``source`` names a training config rather than a checkpoint."""
    return Path(source).suffix in CONFIG_SUFFIXES


def model_config(source: str | Path, model: str | Path, info: ModelInfo, overrides: list[str] | None = None) -> tuple[RunConfig, dict | None]:
    """(config, checkpoint dict or None) of ``source`` — a checkpoint, or a training config with
    ``overrides`` (``key=value``, as ``autoenc train --set`` took them) — after checking that the
    exported ``model``, whose metadata the caller has read as ``info``, was made from it (config hash)."""
    if overrides and not is_config(source):
        raise ValueError(f"--set overrides a training config; {source} is a checkpoint, whose config is fixed")
    ckpt = None
    if is_config(source):
        from autoenc.config import load

        cfg = load(source, overrides)
        config_hash = cfg.hash()
    else:
        from autoenc.checkpoint import read_checkpoint
        from autoenc.config import from_dict

        ckpt = read_checkpoint(source)  # read once; the run's data once, in model_data
        cfg, config_hash = from_dict(ckpt["config"], source=str(source)), ckpt.get("config_hash")
    if info.config_hash != config_hash:
        raise ValueError(f"{model} was not made from {source} (config hash {info.config_hash} vs {config_hash})")
    return cfg, ckpt


def model_data(source: str | Path, cfg: RunConfig, ckpt: dict | None, overrides: list[str] | None = None) -> tuple[TrainingData, dict[str, str]]:
    """The data behind :func:`model_config`'s result, and a note for the metadata of what is
    made from it: where the data came from when it was ingested again."""
    import tempfile

    if ckpt is not None:
        return run_data(source, ckpt), {}
    with tempfile.TemporaryDirectory() as tmp:
        data = config_data(cfg, Path(tmp) / "manifest.csv")
    return data, {"data": f"ingested again from {source}" + "".join(f" --set {o}" for o in overrides or [])}  # not the run's own manifest


def held_out_data(source: str | Path, cfg: RunConfig, ckpt: dict | None, other: RunConfig, learned: dict | None = None) -> tuple[TrainingData, dict[str, str]]:
    """The data of ``other`` — the model's config ``cfg`` with other held-out files (a level
    calibration's) — ingested afresh, and a note for the metadata. A ValueError if any of its
    held-out files is one the model trained on: same content (sha256) or path as a file of the
    training split of the run's manifest (or of ``cfg`` ingested again), or same content as any
    file in ``learned``, the model's record of what every stage and teacher trained on
    (:mod:`autoenc.runtime.trained_on`; None for a model made before records)."""
    import tempfile

    from autoenc.data import TrainingData, ingest, read_manifest
    from autoenc.runtime import trained_on

    with tempfile.TemporaryDirectory() as tmp:
        own = read_manifest(Path(source).parent / "manifest.csv") if ckpt is not None else ingest(_data_root(cfg), cfg.data, Path(tmp) / "own.csv", cfg.modality)
        root = _data_root(other)
        entries = ingest(root, other.data, Path(tmp) / "manifest.csv", other.modality)
    trained = [e for e in own if e.split == "train"]
    hashes, paths = {e.sha256 for e in trained}, {e.path for e in trained}
    held = [e for e in entries if e.split == "val"]
    seen = sorted({e.path for e in held if e.sha256 in hashes or e.path in paths} | set(trained_on.seen(learned, {e.path: e.sha256 for e in held})))
    if seen:
        raise ValueError(f"{len(seen)} of the held-out files are files the model trained on: {', '.join(seen[:5])}{' ...' if len(seen) > 5 else ''}")
    note = "other held-out files (the calibration's settings), ingested afresh; checked by content and path against this model's training split"
    earlier = [str(p) for p in (cfg.train.init_from, cfg.train.teacher) if p is not None]
    if learned is not None:
        note += " and by content against its record of what every stage and teacher trained on (" + trained_on.describe(learned) + ")"
        if learned.get("unknown"):
            log.warning("held-out files checked against %s", trained_on.describe(learned))
    elif earlier:  # what an earlier stage or a teacher trained on is not in this run's manifest
        log.warning("held-out files checked against this run's training split only, not against what %s trained on", " and ".join(earlier))
        note += f" only (not the split of {' or '.join(earlier)}, which it started from or learned from)"
    return TrainingData(other, root, held), {"data": note}  # the fit reads held-out pairs only: no training photos loaded
