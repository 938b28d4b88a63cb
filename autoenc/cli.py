"""``autoenc`` command line: one subcommand per library entry point.

``train``, ``denoise`` and ``demo`` run Prefect flows from the ``pipelines`` package, imported
only when that subcommand runs (the ``autoenc`` library itself never imports Prefect).
``export`` and ``corpus`` call the library directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from autoenc import __version__

log = logging.getLogger("autoenc.cli")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "onnx_ir", "onnxscript", "torch.onnx", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Library logs also reach Prefect's run logger (and its UI) when a flow runs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "autoenc")  # library logs reach the run logs
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _cmd_train(args: argparse.Namespace) -> int:
    from autoenc.config import ConfigError, load

    try:
        cfg = load(args.config, args.set)  # fail fast, before Prefect starts
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.modality == "family":
        from pipelines.family import train_family_flow

        out = train_family_flow(args.config, args.set, args.out)
        print(f"run: {out['run_dir']}\nparts: {', '.join(out['parts'].values())}\nreport: {out['report']}")
        print(json.dumps({k: v for k, v in out["metrics"].items() if k != "split"}, indent=1))
        return 0
    from pipelines.train import train_flow

    out = train_flow(args.config, args.set, args.out, args.resume)
    print(f"run: {out['run_dir']}\nmodel: {out['onnx']}\nreport: {out['report']}")
    from autoenc.runtime.report import metrics_table

    print(metrics_table(out["metrics"]["val"]))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from autoenc.export import ExportError, to_onnx

    try:
        info = to_onnx(args.checkpoint, args.out)
    except (ExportError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({info.model}, {info.channels} channel(s), parity checked)")
    if args.int8:
        _quantize(args.checkpoint, args.out, args.calibration)
    return 0


def _quantize(checkpoint: str, fp32: str, calibration: int) -> None:
    from autoenc.quantize import int8_twin

    q, delta = int8_twin(checkpoint, fp32, calibration)
    print(f"wrote {q}: held-out score fp32 {delta['fp32']:.2f} dB -> int8 {delta['int8']:.2f} dB ({delta['delta_db']:+.3f} dB)")


def _cmd_quantize(args: argparse.Namespace) -> int:
    for path in (args.checkpoint, args.model):
        if not Path(path).is_file():
            print(f"error: no such file: {path}", file=sys.stderr)
            return 1
    try:
        _quantize(args.checkpoint, args.model, args.calibration)
    except ImportError as exc:
        print(f"error: quantize needs the training extra (pip install 'autoenc[train]'): {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_denoise(args: argparse.Namespace) -> int:
    from autoenc.runtime.job_settings import from_args
    from autoenc.runtime.jobs import JobError, JobReport, plan_job
    from autoenc.runtime.typed_config import ConfigError

    try:
        plan_job(args.model, args.input_dir, args.output_dir, incremental=False)  # refuse before Prefect starts
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.denoise import denoise_flow

    try:
        settings = from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = denoise_flow(args.model, args.input_dir, args.output_dir, **settings.model_dump(), show_progress=sys.stderr.isatty())
    report = JobReport.from_dict(out)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pipelines.serve import serve_config

    return serve_config(args.config)


def _cmd_models(args: argparse.Namespace) -> int:
    """List the shipped models (use their names with --model)."""
    from autoenc.runtime.session import shipped_models

    models = shipped_models()
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    if not models:
        print("no shipped models in this installation")
        return 0
    print(f"{'name':<22} {'modality':<8} {'ch':>2} {'MB':>6}  model card")
    for m in models:
        print(f"{m['name']:<22} {m['modality']:<8} {m['channels']:>2} {m['bytes'] / 1e6:>6.2f}  {m['card'] or '-'}")
    return 0


def _cmd_prefect_yaml(args: argparse.Namespace) -> int:
    from autoenc.runtime.typed_config import ConfigError
    from autoenc.runtime.schedule import load_schedule, prefect_yaml

    try:
        text = prefect_yaml(load_schedule(args.config), args.pool, args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


FAMILY_APPS = {  # command -> (exported part it runs, flow arguments from the parsed args)
    "embed": ("encoder", lambda a: (a.model, a.input_dir, a.out)),
    "anomaly": ("model", lambda a: (a.model, a.input_dir, a.out, a.threshold)),
    "sample": ("decoder", lambda a: (a.model, a.n, a.out_dir, a.seed)),
}


def _cmd_family_app(args: argparse.Namespace) -> int:
    """embed / anomaly / sample: check the model part first (nothing written on a bad model),
    then run the Prefect flow of that name."""
    from autoenc.runtime.latent import FamilyPart
    from autoenc.runtime.session import ModelError

    part, flow_args = FAMILY_APPS[args.command]
    try:
        FamilyPart(args.model, part)
        import pipelines.family as fam

        out = getattr(fam, f"{args.command}_flow")(*flow_args(args))
    except (ModelError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from autoenc.corpus import CorpusMissing, build_music_bank, build_speech_corpus

    speech = "" if args.no_speech else args.speech_config
    if speech:
        try:
            build_speech_corpus(), build_music_bank()
        except CorpusMissing as exc:
            print(f"note: skipping the speech part of the demo: {exc}", file=sys.stderr)
            speech = ""
    from pipelines.demo import demo_flow

    parts = demo_flow(args.image_config, speech, args.out)
    titles = {
        "image": "Held-out photos (never trained on), Gaussian noise saved as 8-bit PNG: PSNR dB / SSIM vs clean",
        "speech": "Held-out utterances (never trained on), noise type and SNR in each name: SI-SDR dB / PESQ (wb) / STOI vs clean",
    }
    for name, part in parts.items():
        print(f"\n{titles[name]}\n")
        print(part["table"])
        print(f"\ndenoised files: {part['denoised_dir']}\npicture: {part['picture']}\nreport: {part['run']['report']}")
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    from autoenc.corpus import CorpusMissing, build_music_bank, build_photo_corpus, build_speech_corpus

    out = Path(args.out) if args.out else None
    try:
        print({"photos": build_photo_corpus, "speech": build_speech_corpus, "music": build_music_bank}[args.kind](out))
    except CorpusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per library entry point; each sets ``fn``, the handler it runs."""
    from autoenc.runtime.job_settings import add_flags

    parser = argparse.ArgumentParser(prog="autoenc", description="Denoise folders of images and audio with convolutional denoising autoencoders.")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train, evaluate and export a model from a YAML config (Prefect flow)")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.epochs=3")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("export", help="export a checkpoint to a parity-checked ONNX file")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--int8", action="store_true", help="also write OUT-int8.onnx: static int8 QDQ, calibrated on training inputs, val change measured")
    p.add_argument("--calibration", type=int, default=64, help="training inputs used to calibrate int8")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("quantize", help="write MODEL-int8.onnx beside an exported MODEL.onnx (static int8 QDQ, calibrated on the checkpoint's training inputs)")
    p.add_argument("checkpoint", help="the checkpoint MODEL was exported from (its run folder holds the manifest)")
    p.add_argument("model", help="the exported fp32 .onnx")
    p.add_argument("--calibration", type=int, default=64, help="training inputs used to calibrate int8")
    p.set_defaults(fn=_cmd_quantize)

    p = sub.add_parser("denoise", help="denoise a folder into another folder (Prefect flow, onnxruntime only; images and audio)")
    p.add_argument("--model", required=True, action="append", help="an autoenc .onnx file or shipped model name; give one per modality (image, audio)")
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    add_flags(p)
    p.add_argument("--json", help="also write the job report as JSON here")
    p.set_defaults(fn=_cmd_denoise)

    p = sub.add_parser("serve", help="serve scheduled denoise jobs (starts a local Prefect server unless PREFECT_API_URL is set)")
    p.add_argument("config", help="a schedule YAML, e.g. configs/schedule.yaml")
    p.set_defaults(fn=_cmd_serve)

    p = sub.add_parser("models", help="list the shipped models (names usable with --model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_models)

    p = sub.add_parser("prefect-yaml", help="write the prefect.yaml that deploys a schedule config's jobs to a work pool")
    p.add_argument("config")
    p.add_argument("--pool", default="autoenc-cpu", help="work pool name")
    p.add_argument("--out", help="file to write (default stdout)")
    p.set_defaults(fn=_cmd_prefect_yaml)

    for command, what in (("embed", "latent vectors for a folder of images (autoencoder family; Prefect flow)"),
                          ("anomaly", "reconstruction-error anomaly scores for a folder of images (Prefect flow)")):
        p = sub.add_parser(command, help=what)
        p.add_argument("--model", required=True, help=f"a family run folder or its {FAMILY_APPS[command][0]}.onnx")
        if command == "anomaly":
            p.add_argument("--threshold", type=float, help="override the threshold calibrated at training time")
        p.add_argument("input_dir")
        p.add_argument("out")
        p.set_defaults(fn=_cmd_family_app)

    p = sub.add_parser("sample", help="new images from a variational autoencoder (Prefect flow)")
    p.add_argument("--model", required=True, help="a VAE run folder or its decoder.onnx")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("n", type=int)
    p.add_argument("out_dir")
    p.set_defaults(fn=_cmd_family_app)

    p = sub.add_parser("demo", help="train small image and speech models, denoise held-out files, print the tables")
    p.add_argument("--image-config", default="configs/demo-gray.yaml")
    p.add_argument("--speech-config", default="configs/demo-speech.yaml")
    p.add_argument("--no-speech", action="store_true", help="image part only (no Asterisk packages needed)")
    p.add_argument("--out", default="demo")
    p.set_defaults(fn=_cmd_demo)

    p = sub.add_parser("corpus", help="build a default corpus: photos (from wheels), speech or music (from Debian packages)")
    p.add_argument("kind", nargs="?", choices=["photos", "speech", "music"], default="photos")
    p.add_argument("--out")
    p.set_defaults(fn=_cmd_corpus)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    # Prefect's temporary server gets 20 s to start by default; a busy 2-core box needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
