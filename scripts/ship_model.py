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


REPO = Path(__file__).resolve().parents[1]

from autoenc.runtime.report import metrics_table
from autoenc.runtime.session import model_info

DATA = {
    "image": "the default photo corpus (`autoenc corpus photos`): photos shipped inside the scikit-image, scikit-learn, PyWavelets and matplotlib wheels and, where `make data` unpacked them, photographs from Debian's mate-backgrounds and plasma-workspace-wallpapers; licences of the files used below",
    "audio": "the Asterisk English prompts (Debian `asterisk-core-sounds-en-g722`, 568 utterances by Allison Smith, CC-BY-SA-3.0, decoded from G.722 to 16 kHz) for speech and babble; Asterisk music on hold (Debian `asterisk-moh-opsound-g722`, opsound.org, CC-BY-SA-3.0) for the music noise",
}


def _licences(run_dir: Path, modality: str, cfg: dict) -> list[str]:
    """Licences of the files the run actually read (its manifest), per package."""
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
    args = ap.parse_args()
    run = Path(args.run_dir)
    out = REPO / "autoenc/pretrained"
    out.mkdir(exist_ok=True)
    dst = out / f"{args.name}.onnx"
    shutil.copyfile(run / "model.onnx", dst)
    info = model_info(dst)
    q_src, q_dst = run / "model-int8.onnx", out / f"{args.name}-int8.onnx"
    q_line = ""
    if q_src.is_file():
        import onnx

        shutil.copyfile(q_src, q_dst)
        q = json.loads({p.key: p.value for p in onnx.load(str(q_dst)).metadata_props}["autoenc.quantization"])
        v = q.get("val", {})
        q_line = (f"- **int8:** `{args.name}-int8` ({q_dst.stat().st_size / 1e6:.2f} MB): {q['scheme']}, calibrated on {q['calibration_inputs']} training inputs; "
                  f"mean held-out score {v.get('fp32', float('nan')):.2f} dB fp32 -> {v.get('int8', float('nan')):.2f} dB int8 ({v.get('delta_db', float('nan')):+.3f} dB). "
                  f"Made by `autoenc quantize {run}/best.pt {run}/model.onnx` (or `autoenc export ... --int8`).")
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    split = metrics["split"]
    lines = [
        f"# Model card: `{args.name}`",
        "",
        f"- **What:** {info.modality} denoiser, registry model `{info.model}`, {metrics.get('params', '?')} parameters, {info.channels} channel(s)"
        + (f", {info.sample_rate} Hz" if info.modality == "audio" else "") + f"; ONNX file {dst.stat().st_size / 1e6:.2f} MB (fp32).",
        f"- **Use for:** {args.use_for.rstrip('.')}.",
        f"- **Use:** `autoenc denoise --model {args.name} INPUT_DIR OUTPUT_DIR`.",
        *([q_line] if q_line else []),
        f"- **Training data:** {DATA[info.modality]}.",
        f"- **Split:** validation (never trained on){' = the whole sources ' + ', '.join(cfg['data']['val_sources']) if cfg['data'].get('val_sources') else ''}: {', '.join(split['val_files'][:10])}{' ...' if len(split['val_files']) > 10 else ''} ({len(split['val_files'])} files); {split['train_files']} training files. The manifest with sha256 per file is in the training run folder.",
        f"- **Noise it was trained on (blind: the level is never given):** `{json.dumps(cfg['noise'])}`",
        f"- **Config:** `{args.config}` (config hash `{info.config_hash}`), {metrics.get('epochs_trained', '?')} epochs, best checkpoint from epoch {metrics.get('best_epoch', '?')}.",
        *([f"- **Starts from:** the weights of `{cfg['train']['init_from']}` (train that run first), then fine-tuned as configured."] if cfg["train"].get("init_from") else []),
        f"- **Reproduce:** `autoenc train {args.config}` then `python scripts/ship_model.py runs/{cfg.get('name', args.name)} {args.name} --config {args.config}`. {args.note}".rstrip(),
        f"- **autoenc** {info.version}, model format {info.format_version}; receptive radius {info.receptive_radius}, size multiple {info.size_multiple}.",
        "",
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
