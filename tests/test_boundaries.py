"""Import boundaries: the library never imports Prefect; the denoise path never imports torch."""

import json
import os
import subprocess
import sys

from PIL import Image

from conftest import REPO, photo


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, **(env or {})})


def test_autoenc_never_imports_prefect():
    code = (
        "import importlib, pkgutil, sys, autoenc\n"
        "mods = [m.name for m in pkgutil.walk_packages(autoenc.__path__, 'autoenc.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert 'autoenc.train' in mods and 'autoenc.cli' in mods, mods\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad[:5]\n"
        "print(len(mods))"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) >= 10


def test_denoise_command_never_imports_torch(tmp_path, prefect_api, gray_model, audio_model):
    """In this process (no PREFECT_API_URL) it imports neither torch nor Prefect; as a flow run
    (PREFECT_API_URL set) still no torch. A failed file gives exit code 3 in both."""
    import soundfile as sf

    from conftest import tone

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(50, 60, 3)).save(src / "a.png")
    sf.write(src / "b.flac", tone(0.6, 44100, 2), 44100)  # resampled to 16 kHz and back
    (src / "bad.jpg").write_text("nope")
    for mode, env in (("here", {"PREFECT_API_URL": ""}), ("flow", {"PREFECT_API_URL": prefect_api})):
        report = tmp_path / f"report-{mode}.json"
        code = (
            "import os, sys\n"
            "if not os.environ['PREFECT_API_URL']: del os.environ['PREFECT_API_URL']\n"
            "from autoenc.cli import main\n"
            f"rc = main(['denoise', '--model', {str(gray_model)!r}, '--model', {str(audio_model)!r}, {str(src)!r}, {str(tmp_path / ('out-' + mode))!r}, '--json', {str(report)!r}])\n"
            "loaded = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'torchvision', 'torchaudio'))]\n"
            "assert not loaded, loaded[:5]\n"
            "assert ('prefect' in sys.modules) == bool(os.environ.get('PREFECT_API_URL')), 'prefect imported in-process' \n"
            "sys.exit(rc)"
        )
        out = _run(code, env)
        assert out.returncode == 3, (mode, out.stderr[-3000:])
        assert "2 written, 0 unchanged, 0 skipped, 1 failed" in out.stdout
        assert (tmp_path / f"out-{mode}" / "a.png").is_file() and (tmp_path / f"out-{mode}" / "b.flac").is_file()
        assert json.loads(report.read_text())["counts"] == {"written": 2, "unchanged": 0, "skipped": 0, "failed": 1}


def test_denoise_command_refuses_impossible_jobs(tmp_path, gray_model):
    (tmp_path / "in").mkdir()
    from autoenc.cli import main

    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "in"), str(tmp_path / "in" / "out")]) == 2
    assert main(["denoise", "--model", str(tmp_path / "none.onnx"), str(tmp_path / "in"), str(tmp_path / "out")]) == 2
    assert main(["denoise", "--model", str(gray_model), str(tmp_path / "missing"), str(tmp_path / "out")]) == 2


def test_export_command(tmp_path, gray_model):
    """`autoenc export CHECKPOINT OUT.onnx` writes a parity-checked model; a bad path fails."""
    import onnx

    from autoenc.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", str(gray_model.with_suffix(".pt")), str(out)]) == 0
    assert {p.key for p in onnx.load(str(out)).metadata_props} >= {"autoenc.modality", "autoenc.config_hash", "autoenc.version"}
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")]) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_runtime_imports_without_torch():
    """Every module under autoenc/runtime (the worker side: images, audio, jobs, ledger, reports,
    schedule, family applications) imports with torch, torchvision and torchaudio blocked."""
    code = (
        "import importlib, pkgutil, sys\n"
        "for name in ('torch', 'torchvision', 'torchaudio'): sys.modules[name] = None  # import fails\n"
        "import autoenc.runtime\n"
        "mods = [m.name for m in pkgutil.walk_packages(autoenc.runtime.__path__, 'autoenc.runtime.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "import pipelines.denoise, pipelines.serve, autoenc.metrics\n"
        "print(len(mods))"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) >= 14  # a module moved out of runtime would silently shrink this
