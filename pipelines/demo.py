"""Demo flow: for images and for speech, train a small model on the default corpus, make a
noisy folder from held-out files, denoise it with the exported ONNX model, and score it."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoenc.config import load
from autoenc.data import read_manifest
from autoenc.heldout import format_table, make_noisy_audio_folder, make_noisy_folder, score_folders
from autoenc.runtime.report import write_json
from pipelines.denoise import denoise_flow
from pipelines.train import train_flow


@task(cache_policy=NO_CACHE)
def noisy_folder_step(config: str, run: dict, out: Path) -> tuple[Path, Path]:
    """Noisy copies of the val files: images with the first eval noise, utterances cycling
    through the eval noise settings."""
    cfg = load(config)
    entries = read_manifest(Path(run["run_dir"]) / "manifest.csv")
    val = [e.path for e in entries if e.split == "val"]
    if cfg.modality == "audio":
        return make_noisy_audio_folder(cfg, Path(run["data_root"]), val, out, train_files=[e.path for e in entries if e.split == "train"])
    noise = cfg.noise.model_copy(update={"mixture": cfg.eval.noises[:1]}) if cfg.eval.noises else cfg.noise
    return make_noisy_folder(Path(run["data_root"]), val, cfg.data.channels, noise, cfg.seed + 1, out)


@task(cache_policy=NO_CACHE)
def score_step(clean: Path, noisy: Path, denoised: Path, out: Path) -> list[dict]:
    rows = score_folders(clean, noisy, denoised)
    write_json(out / "scores.json", rows)
    return rows


@flow(name="demo-part")
def demo_part(config: str, out_dir: str) -> dict:
    """Train -> export -> noisy held-out folder -> denoise -> score, for one config."""
    out = Path(out_dir)
    run = train_flow(config, run_dir=str(out / "run"))
    clean, noisy = noisy_folder_step(config, run, out / "heldout")
    denoised = out / "heldout" / "denoised"
    job = denoise_flow([run["onnx"]], str(noisy), str(denoised), return_state=True).result(raise_on_failure=False)
    rows = score_step(clean, noisy, denoised, out)
    picture = Path(run["report"]).parent / ("before_after.png" if (Path(run["run_dir"]) / "before_after.png").exists() else "spectrograms.png")
    return {"table": format_table(rows), "rows": rows, "run": run, "job": job, "denoised_dir": str(denoised), "picture": str(picture)}


@flow(name="demo")
def demo_flow(image_config: str = "configs/demo-gray.yaml", speech_config: str = "configs/demo-speech.yaml", out_dir: str = "demo") -> dict:
    """The README demo: an image part and a speech part; returns both score tables."""
    logger = get_run_logger()
    parts = {"image": demo_part(image_config, str(Path(out_dir) / "image"))}
    if speech_config:
        parts["speech"] = demo_part(speech_config, str(Path(out_dir) / "speech"))
    for name, part in parts.items():
        logger.info("%s held-out scores:\n%s", name, part["table"])
    return parts
