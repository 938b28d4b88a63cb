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
import shutil
import signal
import sys
from pathlib import Path

from autoenc import __version__

log = logging.getLogger("autoenc.cli")


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    """autoenc's loggers at INFO (DEBUG with -v, WARNING with -q); everything else at WARNING,
    so -v shows autoenc's detail without Prefect's or httpx's. Records go to stderr above any
    progress bar."""
    from autoenc.runtime.job_summary import BarLogHandler

    handler = BarLogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("autoenc").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pipelines").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    # Library logs also reach Prefect's run logger (and its UI) when a flow runs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "autoenc")  # library logs reach the run logs
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


EXIT_FAILED_FILES = 3  # the job ran and some files failed (each listed with its reason)
EXIT_CANNOT_RUN = 2  # the job could not start; nothing was touched
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report it


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


def _quantize(source: str, fp32: str, calibration: int, against: str | None = None, overrides: list[str] | None = None) -> None:
    from autoenc.quantize import int8_twin

    q, delta = int8_twin(source, fp32, calibration, against=against, overrides=overrides)
    print(f"wrote {q}: held-out score fp32{f' ({against})' if against else ''} {delta['fp32']:.2f} dB -> int8 {delta['int8']:.2f} dB ({delta['delta_db']:+.3f} dB)")


def _training_side(command: str, paths: list[str | None], work) -> int:
    """Run ``work()`` for a training-side subcommand on files ``paths`` (None: not given): 1 with
    one clear line for a missing file, a missing training extra or a refusal, else 0."""
    for path in paths:
        if path is not None and not Path(path).is_file():
            print(f"error: no such file: {path}", file=sys.stderr)
            return 1
    try:
        work()
    except ImportError as exc:
        print(f"error: {command} needs the training extra (pip install 'autoenc[train]'): {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    return _training_side("quantize", [args.source, args.model, args.against], lambda: _quantize(args.source, args.model, args.calibration, args.against, args.set))


def _calibrate(args: argparse.Namespace) -> None:
    from autoenc.config import load_calibration_settings
    from autoenc.level_calibration import calibrate
    from autoenc.runtime.noise_level import describe_calibration

    settings = load_calibration_settings(args.settings) if args.settings else None
    knots, report = calibrate(args.source, args.model, args.also, args.set, settings)
    for tag, scores in report["by_gain"].items():
        print(f"{tag}: " + " ".join(f"{g}:{v:.3f}" for g, v in scores.items()))
    for tag in report["before"]:
        print(f"{tag}: {report['before'][tag]:.3f} -> {report['after'][tag]:.3f} dB")
    told = describe_calibration(knots) if knots else "the estimate as it is (no gain improved the validation)"
    print(f"wrote {', '.join(map(str, [args.model, *args.also]))}: told {told}")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    return _training_side("calibrate", [args.source, args.model, *args.also], lambda: _calibrate(args))


def _cmd_denoise(args: argparse.Namespace) -> int:
    """Plan (refusing an impossible job before anything is touched), then run in this process,
    or as a Prefect flow run when PREFECT_API_URL names a server (or --prefect is given)."""
    from autoenc.runtime.job_settings import from_args
    from autoenc.runtime.jobs import JobError, plan_job, split_inputs
    from autoenc.runtime.typed_config import ConfigError

    *inputs, output_dir = args.paths
    as_flow = bool(os.environ.get("PREFECT_API_URL")) or args.prefect
    if as_flow and os.environ.get("PREFECT_API_URL") and not args.dry_run:
        from pipelines.local_server import healthy

        url = os.environ["PREFECT_API_URL"]
        if not healthy(url, timeout=5.0):  # before anything is planned or created
            print(f"error: the Prefect server at PREFECT_API_URL={url} does not answer; start it, or unset PREFECT_API_URL to run without Prefect", file=sys.stderr)
            return EXIT_CANNOT_RUN
    try:
        if not inputs:
            raise JobError("give an input (a folder, or one or more files) and an output folder")
        settings = from_args(args)
        input_dir, files = split_inputs(inputs)
        plan = plan_job(args.model, input_dir, output_dir, incremental=settings.incremental, overwrite=settings.overwrite, state_dir=settings.state_dir, files=files, sweep=not args.dry_run, strength=settings.strength, ensemble=settings.ensemble)
    except (JobError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.dry_run:
        return _dry_run(plan, args)
    if as_flow:
        return _denoise_as_flow(args, settings, str(plan.input_dir), files)
    return _denoise_here(args, settings, plan)


def _emit(args: argparse.Namespace, data: dict, summary: str) -> None:
    """The JSON report (a file, or stdout for ``--json -``) and the human summary (stdout, or
    stderr when stdout carries JSON; nothing with -q)."""
    if args.json == "-":
        print(json.dumps(data, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))
    if not args.quiet:
        print(summary, file=sys.stderr if args.json == "-" else sys.stdout)


def _dry_run(plan, args: argparse.Namespace) -> int:
    """What would be done and why each other file would not: nothing is written."""
    lines = [f"dry run: would denoise {len(plan.files)} file(s) from {plan.input_dir} into {plan.output_dir}"]
    lines += [f"  denoise: {rel}" for rel in plan.files]
    lines += [f"  {r.status}: {r.path}: {r.reason}" for r in plan.skipped]
    data = {"dry_run": True, "input_dir": str(plan.input_dir), "output_dir": str(plan.output_dir), "models": plan.models,
            "denoise": plan.files, "not_denoised": [{"path": r.path, "status": r.status, "reason": r.reason} for r in plan.skipped]}
    _emit(args, data, "\n".join(lines))
    return 0


def _denoise_here(args: argparse.Namespace, settings, plan) -> int:
    """Run the plan in this process (no Prefect): per-file progress, one summary; Ctrl-C or
    SIGTERM finishes the file in hand, releases the claims and prints the partial summary."""
    import threading

    from autoenc.runtime.job_summary import ProgressBar
    from autoenc.runtime.jobs import run_plan

    stop, caught = threading.Event(), []

    def _stop(signum, frame):
        if stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        caught.append(signum)
        stop.set()
        print("\nstopping after the file in hand (Ctrl-C again to abort)...", file=sys.stderr)

    previous = {sig: signal.signal(sig, _stop) for sig in EXIT_INTERRUPTED}
    bar = ProgressBar(len(plan.files), force=False) if not args.quiet else None
    try:
        report = run_plan(plan, settings, on_file=bar.file_done if bar else None, stop=stop)
    finally:
        if bar:
            bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _emit(args, report.to_dict(), report.summary())
    if caught:
        return EXIT_INTERRUPTED[caught[0]]
    return EXIT_FAILED_FILES if report.counts()["failed"] else 0


def _denoise_as_flow(args: argparse.Namespace, settings, input_dir: str, files: list[str] | None) -> int:
    """Run the job as a ``denoise`` flow run on the server PREFECT_API_URL names (checked
    before planning), or on a temporary local server with --prefect."""
    from autoenc.runtime.jobs import JobReport

    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # no per-task INFO lines on the terminal
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        # Our own temporary server rather than Prefect's ephemeral one: it is told to die with
        # this process, so a killed or timed-out run leaves no server holding memory and a port.
        import tempfile

        from pipelines.local_server import LocalServer, ServerError

        server = LocalServer(tempfile.mkdtemp(prefix="autoenc-prefect-"), port=0, ui=False)
        try:
            os.environ["PREFECT_API_URL"] = server.start()
        except ServerError as exc:
            print(f"error: could not start a temporary Prefect server: {exc}", file=sys.stderr)
            return 2
    try:
        from pipelines.denoise import denoise_flow

        state = denoise_flow(args.model, input_dir, args.paths[-1], files=files, **settings.model_dump(), show_progress=not args.quiet and sys.stderr.isatty(), return_state=True)
    except KeyboardInterrupt:
        print("interrupted: the flow run stops; files written so far are kept and a rerun continues", file=sys.stderr)
        return EXIT_INTERRUPTED[signal.SIGINT]
    except SystemExit as exc:  # SIGTERM while the flow ran
        print("terminated: the flow run stops; files written so far are kept and a rerun continues", file=sys.stderr)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_INTERRUPTED[signal.SIGTERM]
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
    out = state.result(raise_on_failure=False)
    if not isinstance(out, dict):  # the flow itself crashed
        print(f"error: the denoise flow run ended {state.name}: {out}", file=sys.stderr)
        return 1
    report = JobReport.from_dict(out)
    _emit(args, out, report.summary())
    return EXIT_FAILED_FILES if report.counts()["failed"] else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pipelines.serve import serve_config

    return serve_config(args.config)


def _cmd_models(args: argparse.Namespace) -> int:
    """List the shipped models (use their names with --model)."""
    from autoenc.runtime.session import shipped_models

    if args.config:
        return _print_model_config(args.config)
    models = shipped_models()
    if args.check_int8:  # load each int8 model as a job would: how its kernels run on this CPU
        from autoenc.runtime.session import OnnxModel

        for m in models:
            m["int8_kernels"] = OnnxModel(m["path"], threads=1).int8_kernels
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    if not models:
        print("no shipped models in this installation")
        return 0
    here = lambda m: f" {m['int8_kernels'] or '-':<21}" if args.check_int8 else ""  # noqa: E731
    print(f"{'name':<21} {'modality':<8} {'ch':>2} {'MB':>5} {'strength':<8}" + (f" {'int8 on this CPU':<21}" if args.check_int8 else "") + "  use for")
    for m in models:
        print(f"{m['name']:<21} {m['modality']:<8} {m['channels']:>2} {m['bytes'] / 1e6:>5.2f} {'yes' if m['noise_level_input'] else '-':<8}{here(m)}  {m['use_for'] or '-'}")
    if args.check_int8:
        print("\nint8 on this CPU: fused = integer kernels, faster than fp32; 'fused, uint8 x uint8' = this x86 CPU lacks VNNI, so its "
              "uint8 x int8 kernels would saturate and int8 runs about as fast as fp32; unfused = slower than fp32 (autoenc/runtime/int8_kernels.py)")
    print("\nmodel cards (data, licences, split, held-out scores): " + ", ".join(sorted({Path(m["card"]).name for m in models if m["card"]})) + f" in {Path(models[0]['path']).parent}")
    return 0


def _print_model_config(model: str) -> int:
    """Write out (YAML, stdout) the run config a model's last training stage was made with."""
    import yaml

    from autoenc.runtime.session import model_info, resolve_model

    info = model_info(resolve_model(model))
    if info.config is None:
        print(f"error: {model} was exported before models kept their training config (its card names the config; config hash {info.config_hash})", file=sys.stderr)
        return 1
    print(f"# the training config of {model}'s last stage (config hash {info.config_hash}); paths are relative to the directory it was trained in")
    print(yaml.safe_dump(info.config, sort_keys=False), end="")
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
    from autoenc.corpus import CorpusMissing, build_benchmark_photos, build_music_bank, build_photo_corpus, build_speech_corpus
    from autoenc.voices import build_benchmark_voices, build_effects_bank, build_voice_corpus

    out = Path(args.out) if args.out else None
    builds = {
        "photos": [build_photo_corpus, build_benchmark_photos],
        "photos-wide": [lambda out: build_photo_corpus(out, wide=True)],
        "speech": [build_voice_corpus, build_benchmark_voices, build_effects_bank],
        "asterisk": [build_speech_corpus],
        "music": [build_music_bank],
    }[args.kind]
    try:
        for build in builds:  # --out names the first (the training corpus); the others go to the cache
            print(build(out if build is builds[0] else None))
    except CorpusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per library entry point; each sets ``fn``, the handler it runs."""
    from autoenc.runtime.job_settings import add_flags

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="autoenc's debug messages (other libraries stay quiet)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress and no summary; errors and the exit code only")
    parser = argparse.ArgumentParser(prog="autoenc", description="Denoise folders of images and audio with convolutional denoising autoencoders.")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="autoenc's debug messages (other libraries stay quiet)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; errors and the exit code only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="train, evaluate and export a model from a YAML config (Prefect flow)")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.epochs=3")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("export", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="export a checkpoint to a parity-checked ONNX file")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--int8", action="store_true", help="also write OUT-int8.onnx: static int8 QDQ, calibrated on training inputs, val change measured")
    p.add_argument("--calibration", type=int, default=64, help="training inputs used to calibrate int8")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("quantize", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write MODEL-int8.onnx beside an exported MODEL.onnx (static int8 QDQ, calibrated on its training inputs)")
    p.add_argument("source", metavar="CHECKPOINT_OR_CONFIG", help="the checkpoint MODEL was exported from (its run folder holds the manifest), or the training config (.yaml) MODEL was made with: its data is ingested again (a shipped model whose run folder is gone)")
    p.add_argument("model", help="the exported fp32 .onnx")
    p.add_argument("--calibration", type=int, default=64, help="training inputs used to calibrate int8")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with a config: the overrides the model was trained with (autoenc train --set), e.g. model.kwargs.width=24")
    p.add_argument("--against", help="the fp32 .onnx the int8 twin stands in for, if not MODEL (after a quantization-aware fine-tune: the model it started from, the default where train.init_from is an .onnx); the held-out change is measured against it")
    p.set_defaults(fn=_cmd_quantize)

    p = sub.add_parser("calibrate", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="fit the gain on the estimated noise level an image model is told, on its validation pairs, and write it into MODEL (and its twins)")
    p.add_argument("source", metavar="CHECKPOINT_OR_CONFIG", help="the checkpoint MODEL was exported from (its run folder holds the manifest), or the training config (.yaml) MODEL was made with")
    p.add_argument("model", help="the exported fp32 .onnx, told the noise level")
    p.add_argument("--also", action="append", default=[], metavar="TWIN", help="write the same calibration into this file too (MODEL's int8 twin)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with a config: the overrides the model was trained with (autoenc train --set)")
    p.add_argument("--settings", metavar="YAML", help="fit on these validation noise settings (a YAML file with a 'noises' list, as a config's eval.noises) instead of the run's own; camera settings give knots by kind of noise (white or blotchy). Its optional 'data' mapping names other held-out files (corpus, val_files or val_sources, max_val_images, val_crop), none of which the model may have trained on")
    p.set_defaults(fn=_cmd_calibrate)

    p = sub.add_parser("denoise", parents=[common], help="denoise a folder, or files, into an output folder (onnxruntime only; images and audio)",
                       description="Denoise INPUT (a folder, or one or more files) into OUTPUT_DIR: same relative paths, names and formats. "
                       "Runs in this process; as a Prefect flow run when PREFECT_API_URL is set or with --prefect. "
                       f"Exit codes: 0 done, {EXIT_FAILED_FILES} done but some files failed (listed), {EXIT_CANNOT_RUN} cannot run (nothing touched), 130/143 interrupted by SIGINT/SIGTERM.")
    p.add_argument("--model", required=True, action="append", help="an autoenc .onnx file or shipped model name; give one per modality (image, audio)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="INPUT... OUTPUT_DIR: a folder or one or more files, then the output folder")
    add_flags(p)
    p.add_argument("--json", help="also write the job report as JSON to this file ('-': stdout, the summary then goes to stderr)")
    p.add_argument("--dry-run", action="store_true", help="say what would be denoised and why each other file would not; write nothing")
    p.add_argument("--prefect", action="store_true", help="run as a Prefect flow run even without PREFECT_API_URL (starts a temporary local server, ~10 s, that stops with this process)")
    p.set_defaults(fn=_cmd_denoise)

    p = sub.add_parser("serve", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="serve scheduled denoise jobs (starts a local Prefect server unless PREFECT_API_URL is set)")
    p.add_argument("config", help="a schedule YAML, e.g. configs/schedule.yaml")
    p.set_defaults(fn=_cmd_serve)

    p = sub.add_parser("models", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="list the shipped models (names usable with --model)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--check-int8", action="store_true", help="load each int8 model and say how it runs on this CPU (about 1 s)")
    p.add_argument("--config", metavar="MODEL", help="instead, write out the training config MODEL's last stage was made with (YAML; a shipped name or an .onnx path)")
    p.set_defaults(fn=_cmd_models)

    p = sub.add_parser("prefect-yaml", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write the prefect.yaml that deploys a schedule config's jobs to a work pool")
    p.add_argument("config")
    p.add_argument("--pool", default="autoenc-cpu", help="work pool name")
    p.add_argument("--out", help="file to write (default stdout)")
    p.set_defaults(fn=_cmd_prefect_yaml)

    for command, what in (("embed", "latent vectors for a folder of images (autoencoder family; Prefect flow)"),
                          ("anomaly", "reconstruction-error anomaly scores for a folder of images (Prefect flow)")):
        p = sub.add_parser(command, parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help=what)
        p.add_argument("--model", required=True, help=f"a family run folder or its {FAMILY_APPS[command][0]}.onnx")
        if command == "anomaly":
            p.add_argument("--threshold", type=float, help="override the threshold calibrated at training time")
        p.add_argument("input_dir")
        p.add_argument("out")
        p.set_defaults(fn=_cmd_family_app)

    p = sub.add_parser("sample", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="new images from a variational autoencoder (Prefect flow)")
    p.add_argument("--model", required=True, help="a VAE run folder or its decoder.onnx")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("n", type=int)
    p.add_argument("out_dir")
    p.set_defaults(fn=_cmd_family_app)

    p = sub.add_parser("demo", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="train small image and speech models, denoise held-out files, print the tables")
    p.add_argument("--image-config", default="configs/demo-gray.yaml")
    p.add_argument("--speech-config", default="configs/demo-speech.yaml")
    p.add_argument("--no-speech", action="store_true", help="image part only (no Asterisk packages needed)")
    p.add_argument("--out", default="demo")
    p.set_defaults(fn=_cmd_demo)

    p = sub.add_parser("corpus", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="build a default corpus offline: photos (wheels and Debian packages, with the benchmark photos), photos-wide (the photos plus Endless Sky's ~260 photographs, data.corpus: photos-wide; needs `make wide-data`), speech (many voices and languages from Debian packages, with the held-out Dutch benchmark voices and the sound-effects noise bank), asterisk (the one-voice Asterisk prompts) or music (music on hold)")
    p.add_argument("kind", nargs="?", choices=["photos", "photos-wide", "speech", "asterisk", "music"], default="photos")
    p.add_argument("--out")
    p.set_defaults(fn=_cmd_corpus)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    # Prefect's temporary server gets 20 s to start by default; a busy 2-core box needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
