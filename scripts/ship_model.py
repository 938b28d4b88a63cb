"""Ship a trained run as a packaged model: copy RUN_DIR/model.onnx to
autoenc/pretrained/NAME.onnx and write its model card NAME.md (training data and licences,
split, noise distribution, validation metrics, config, and the command that reproduces it).

    python scripts/ship_model.py RUN_DIR NAME --config configs/image-gray.yaml
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import onnx


REPO = Path(__file__).resolve().parents[1]

from autoenc.corpus import DEBIAN_PHOTOS, WIDE_CORPUS, WIDE_PHOTOS
from autoenc.runtime import trained_on
from autoenc.runtime.noise_level import describe_calibration
from autoenc.runtime.report import metrics_table
from autoenc.runtime.session import model_info
from autoenc.weight_storage import is_fp16_stored

VOICES = ("the many-voices speech corpus (`autoenc corpus speech`, see `autoenc/voices.py`): Czech dialogue of the game Fish Fillets "
          "(Debian `fillets-ng-data-cs`, two main actors and many minor characters), the hedgewars voice packs (`hedgewars-data`, 14 voices, "
          "English, Polish, Russian, Spanish, Ukrainian accents), letters and syllables spoken in ~20 languages (`klettres-data`) and the Asterisk "
          "English prompts; all resampled to 16 kHz, trimmed of silence, peak-normalised, then speed-perturbed and equalised at random while training. "
          "Noise: music on hold (Debian `asterisk-moh-opsound-g722`), hedgewars' recorded sound effects, babble of 3-10 other training talkers, and synthetic noises")
PHOTOS = "photos shipped inside the scikit-image, scikit-learn, PyWavelets and matplotlib wheels and, where `make data` unpacked them, photographs from Debian's " + ", ".join(DEBIAN_PHOTOS)
WIDE = (f"the wider photo corpus (`autoenc corpus {WIDE_CORPUS}`, after `make wide-data`): the default photo corpus ({PHOTOS}) plus the photographs of Debian's "
        + ", ".join(WIDE_PHOTOS) + " (Endless Sky's landscapes, city skylines, industrial and NASA interiors: JPEGs, halved to 720x360); licences of the files used below")
CAMERA_PROFILES = ("- **Camera noise profiles:** darktable's measured `noiseprofiles.json` (Debian `darktable` 4.2.1, GPL-3), read at training time and not shipped; "
                   "Poisson-Gaussian (a, b) per channel and ISO for 374 camera models.")  # cards of models trained on camera noise


def camera_profiles_line(noise: dict) -> list[str]:
    """The card's line on darktable's profiles, for a model trained on camera noise: which makers it never trained on."""
    specs = [spec for spec in [*noise["mixture"], *noise.get("then", [])] if spec.get("name") == "camera"]
    if not specs:
        return []
    candidates = {m for spec in specs for m in spec.get("exclude_makers") or []}
    held = sorted(m for m in candidates if all(m in (spec.get("exclude_makers") or []) or (spec.get("makers") and m not in spec["makers"]) for spec in specs))
    return [CAMERA_PROFILES + (f" Profiles of {', '.join(held)} were never trained on." if held else "")]


DATA = {
    "image": f"the default photo corpus (`autoenc corpus photos`): {PHOTOS}; licences of the files used below",
    "audio": "the Asterisk English prompts (Debian `asterisk-core-sounds-en-g722`, 568 utterances by Allison Smith, CC-BY-SA-3.0, decoded from G.722 to 16 kHz) for speech and babble; Asterisk music on hold (Debian `asterisk-moh-opsound-g722`, opsound.org, CC-BY-SA-3.0) for the music noise",
}


def _training_data(modality: str, corpus: str | None) -> str:
    """The card's description of a run's training data, from its modality and ``data.corpus``."""
    if corpus == "voices":
        return VOICES
    return WIDE if modality == "image" and corpus == WIDE_CORPUS else DATA[modality]


def _voices(run_dir: Path) -> list[str]:
    """Per source of the run's manifest: split and minutes of audio."""
    from autoenc.data import read_manifest, source_of

    minutes: Counter = Counter()
    split = {}
    for e in read_manifest(run_dir / "manifest.csv"):
        frames, rest = e.info.split(" frames @ ")
        minutes[source_of(e.path)] += int(frames) / int(rest.split(" Hz")[0]) / 60
        split[source_of(e.path)] = e.split
    rows = ["| source (voice, pack or language) | split | minutes |", "|---|---|---|"]
    rows += [f"| {src} | {'validation' if split[src] == 'val' else 'training'} | {m:.1f} |" for src, m in sorted(minutes.items())]
    total = {k: sum(m for s_, m in minutes.items() if split[s_] == k) for k in ("train", "val")}
    rows.append(f"| **total** | training {total['train'] / 60:.2f} h, validation {total['val']:.1f} min | |")
    return rows


def _benchmark(path: Path, name: str) -> list[str]:
    """The held-out benchmark's means (benchmarks/audio_quality.json) for this model and the peers."""
    d = json.loads(path.read_text())
    methods = list(d["means"])
    rows = ["| method | mean SI-SDR dB | mean PESQ-WB | " + " | ".join(f"{k} SI-SDR" for k in d["noises"]) + " | clean input SI-SDR |", "|---|---|---|" + "---|" * len(d["noises"]) + "---|"]
    for m in methods:
        per = [sum(r["si_sdr"] for r in d["rows"] if r["method"] == m and r["noise"] == k) / len(d["snrs"]) for k in d["noises"]]
        clean = next(r["si_sdr"] for r in d["rows"] if r["method"] == m and r["snr"] is None)
        rows.append(f"| {m} | {d['means'][m][0]:.2f} | {d['means'][m][1]:.2f} | " + " | ".join(f"{v:.2f}" for v in per) + f" | {clean:.1f} |")
    return [f"`python benchmarks/audio_quality.py` on {len(d['utterances'])} utterances of voices never trained or validated on (Dutch: "
            f"`fillets-ng-data-nl`), noises at {'/'.join(map(str, d['snrs']))} dB SNR, first 4 s:", "", *rows]


def _image_benchmark(path: Path) -> list[str]:
    """PSNR per sigma and method from a benchmarks/image_quality.py JSON, one column per method."""
    d = json.loads(path.read_text())
    methods = list(dict.fromkeys(r["method"] for r in d["rows"] if r["sigma"] > 0))
    sigmas = sorted({r["sigma"] for r in d["rows"]})
    psnr = {(r["sigma"], r["method"]): r["psnr"] for r in d["rows"]}
    rows = ["| σ | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for sg in sigmas:
        rows.append(f"| {'0 (clean input)' if sg == 0 else f'{sg:g}'} | " + " | ".join(f"{psnr[sg, m]:.2f}" if (sg, m) in psnr else "" for m in methods) + " |")
    return [f"`python benchmarks/image_quality.py{' --color' if d['color'] else ''}` on {len(d['files'])} crops ({d['megapixels']:.2f} MP) of the `palapeli-data` photos, "
            "a package never trained or validated on; Gaussian noise saved as 8-bit; PSNR dB; the baselines are told the true σ:", "", *rows]


def _licences(run_dir: Path, modality: str, cfg: dict) -> list[str]:
    """Licences of the files the run actually read (its manifest), per package."""
    if modality != "image" and cfg["data"].get("corpus") == "voices":
        from autoenc.corpus import read_sources, resolve_data_root
        from autoenc.data import read_manifest

        root = resolve_data_root(None, cfg["data"]["corpus_dir"], modality, "voices")
        sources = read_sources(root)
        by = Counter(f"{sources[e.path]['package']}: {sources[e.path]['licence']}" for e in read_manifest(run_dir / "manifest.csv") if e.path in sources)
        return [f"{n} file(s) from {k}" for k, n in sorted(by.items())] + [
            "noise: music on hold from `asterisk-moh-opsound-g722` (opsound.org, CC-BY-SA-3.0); sound effects from `hedgewars-data` (GFDL-1.3).",
            "The weights are a derived work of GPL, GFDL and CC-BY-SA material: keep these attributions."]
    if modality != "image":
        return ["Speech and music: CC-BY-SA-3.0 (Digium / Allison Smith; opsound.org artists). The weights are a derived work: keep this attribution."]
    from autoenc.corpus import read_sources, resolve_data_root
    from autoenc.data import read_manifest

    root = resolve_data_root(cfg["data"]["root"], cfg["data"]["corpus_dir"], modality, cfg["data"].get("corpus"))
    if not (root / "SOURCES.csv").is_file():
        return [f"{root} is not a default corpus: see its own licences"]
    sources = read_sources(root)
    by = Counter(f"{sources[e.path]['package']}: {sources[e.path]['licence']}" for e in read_manifest(run_dir / "manifest.csv") if e.path in sources)
    return [f"{n} file(s) from {k}" for k, n in sorted(by.items())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("name")
    ap.add_argument("--config", required=True, help="the configs/ file the run was trained from")
    ap.add_argument("--note", default="", help="extra line for the card (e.g. threads used)")
    ap.add_argument("--use-for", required=True, help="which media the model is for (shown by `autoenc models`)")
    ap.add_argument("--limits", default="", help="the card's Limits paragraph (default: the small-corpus caveat)")
    ap.add_argument("--benchmark", help="benchmarks/audio_quality.json or image_quality*.json with this model, quoted in the card")
    args = ap.parse_args()
    run = Path(args.run_dir)
    out = REPO / "autoenc/pretrained"
    out.mkdir(exist_ok=True)
    dst = out / f"{args.name}.onnx"
    shutil.copyfile(run / "model.onnx", dst)
    info = model_info(dst)
    cfg = json.loads((run / "config.json").read_text())
    cfg_name = cfg.get("name", args.name)  # the run folder `autoenc train` makes: runs/<name>
    q_src, q_dst = run / "model-int8.onnx", out / f"{args.name}-int8.onnx"
    q_line = ""
    if q_src.is_file():
        shutil.copyfile(q_src, q_dst)
        q = json.loads({p.key: p.value for p in onnx.load(str(q_dst)).metadata_props}["autoenc.quantization"])
        v = q.get("val", {})
        q_line = (f"- **int8:** `{args.name}-int8` ({q_dst.stat().st_size / 1e6:.2f} MB): {q['scheme']}, calibrated on {q['calibration_inputs']} training inputs; "
                  f"mean held-out score {v.get('fp32', float('nan')):.2f} dB fp32 -> {v.get('int8', float('nan')):.2f} dB int8 ({v.get('delta_db', float('nan')):+.3f} dB). "
                  f"Made by `autoenc quantize runs/{cfg_name}/best.pt runs/{cfg_name}/model.onnx` (or `autoenc export ... --int8`).")
    metrics = json.loads((run / "metrics.json").read_text())
    split = metrics["split"]
    lines = [
        f"# Model card: `{args.name}`",
        "",
        f"- **What:** {info.modality} denoiser, registry model `{info.model}`, {metrics.get('params', '?')} parameters, {info.channels} channel(s)"
        + (f", {info.sample_rate} Hz" if info.modality == "audio" else "") + f"; ONNX file {dst.stat().st_size / 1e6:.2f} MB ({'fp32 compute, weights stored as fp16' if is_fp16_stored(onnx.load(str(dst))) else 'fp32'}).",
        f"- **Use for:** {args.use_for.rstrip('.')}.",
        f"- **Use:** `autoenc denoise --model {args.name} INPUT_DIR OUTPUT_DIR`.",
        *([q_line] if q_line else []),
        f"- **Training data:** {_training_data(info.modality, cfg['data'].get('corpus'))}"
        + (f"; {cfg['data']['dead_leaves']:.0%} of the training patches cut from synthetic dead-leaves images instead (`autoenc/dead_leaves.py`, rendered from the run's seed)" if cfg["data"].get("dead_leaves") else "") + ".",
        f"- **Split:** validation (never trained on){' = the whole sources ' + ', '.join(cfg['data']['val_sources']) if cfg['data'].get('val_sources') else ''}: {', '.join(split['val_files'][:10])}{' ...' if len(split['val_files']) > 10 else ''} ({len(split['val_files'])} files); {split['train_files']} training files. The manifest with sha256 per file is in the training run folder.",
        f"- **Its record of what it learned from** (`autoenc.trained_on`, which calibrations and the quality benchmarks check their held-out files against): {trained_on.describe(info.trained_on)}.",
        *camera_profiles_line(cfg["noise"]),
        (f"- **Noise it was trained on (blind to users: it is told the level `autoenc/runtime/noise_level.py` estimates from the file{' and its noise profile (per luminance and chrominance plane, at two scales)' if info.noise_profile else ''}, times `--strength`):** `{json.dumps(cfg['noise'])}`"
         if info.noise_level_input else f"- **Noise it was trained on (blind: the level is never given):** `{json.dumps(cfg['noise'])}`"),
        *([f"- **Level calibration** (`autoenc calibrate`, fitted on its validation pairs): told {describe_calibration(info.level_calibration)}"
           " (0..255 scale; linear between, the end gains beyond), then times `--strength`."] if info.level_calibration else []),
        *([f"- **Front end:** every input first passes a decision-directed Wiener filter (`autoenc/runtime/prefilter.py`: noise spectrum from the quietest {info.prefilter['quantile']:.0%} of frames "
           f"in {info.prefilter['block_seconds']:g} s blocks, gain floor {info.prefilter['floor_db']:g} dB"
           f"{'; a block whose noise estimate lies more than ' + format(-info.prefilter['clean_db'], 'g') + ' dB below its mean frame power is taken for clean and filtered less' if info.prefilter.get('clean_db') is not None else ''}"
           f"), in training and at inference; the network removes what it leaves"
           f"{', reading the unfiltered input beside the filtered one (so it can restore what the filter took where that was voice)' if info.raw_plane else ''}. Settings in the ONNX metadata: `{json.dumps(info.prefilter)}`."]
          if info.prefilter else []),
        f"- **Config:** `{args.config}` (config hash `{info.config_hash}`), {metrics.get('epochs_trained', '?')} epochs, best checkpoint from epoch {metrics.get('best_epoch', '?')}.",
        *([f"- **Starts from:** the weights of `{cfg['train']['init_from']}`"
           + (" as committed before this model replaced it (see the config's header for the commit)" if str(cfg["train"]["init_from"]).endswith(".onnx") else " (train that run first)")
           + ", then trained as configured."] if cfg["train"].get("init_from") else []),
        f"- **Reproduce:** `autoenc train {args.config}` then `python scripts/ship_model.py runs/{cfg_name} {args.name} --config {args.config}`. {args.note}".rstrip(),
        f"- **autoenc** {info.version}, model format {info.format_version}; receptive radius {info.receptive_radius}, size multiple {info.size_multiple}.",
        "",
        *(["## Voices (split by source: whole voices and languages held out)", "", *_voices(run), "",
            "The benchmark voices (Dutch: `fillets-ng-data-nl` and klettres Dutch) are in a separate folder and were never trained or validated on.", ""]
          if cfg["data"].get("corpus") == "voices" else []),
        *(["## Benchmark on held-out voices", "", *_benchmark(Path(args.benchmark), args.name), ""] if args.benchmark and info.modality == "audio" else []),
        *(["## Benchmark on held-out photos", "", *_image_benchmark(Path(args.benchmark)), ""] if args.benchmark and info.modality == "image" else []),
        "## Validation metrics (held-out files, best checkpoint)",
        "",
        metrics_table(metrics["val"]),
        "",
        "## Licences of the training data",
        "",
        *[f"- {x}" for x in _licences(run, info.modality, cfg)],
        "",
        "## Limits",
        "",
        args.limits or "Trained on a small corpus for under an hour on one CPU core: it removes the noise types above "
        "but does not match BM3D (images) or a Wiener filter on every noise (speech); see the README's benchmark tables.",
        "",
    ]
    (out / f"{args.name}.md").write_text("\n".join(lines))
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB) and {out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
