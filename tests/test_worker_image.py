"""The CPU worker image's install steps (docker/install.sh, which the Dockerfile runs) in a clean
venv: the exact dependency set has no torch, and denoising images and audio works with it.
There is no Docker engine on the build machines, so this stands in for `docker build`."""

from __future__ import annotations

import json
import subprocess

import soundfile as sf
from PIL import Image

from conftest import REPO, output_files, photo, tone


def test_dockerfile_installs_with_the_tested_script():
    """The image's only install step is docker/install.sh, the script the next test runs."""
    runs = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("RUN")]
    assert len(runs) == 1 and "docker/install.sh" in runs[0]


def test_worker_install_is_torch_free_and_denoises(tmp_path, gray_model, audio_model):
    venv = tmp_path / "venv"
    r = subprocess.run(["sh", str(REPO / "docker/install.sh"), str(venv), str(REPO)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    py = venv / "bin/python"
    probe = subprocess.run([str(py), "-c", "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in ['torch', 'torchvision', 'torchaudio', 'onnxruntime', 'prefect', 'prefect_dask', 'autoenc', 'pipelines']}))"], capture_output=True, text=True, check=True)
    assert json.loads(probe.stdout) == {"torch": False, "torchvision": False, "torchaudio": False, "onnxruntime": True, "prefect": True, "prefect_dask": True, "autoenc": True, "pipelines": True}
    # The packages the image holds: the core and Dask dependencies of pyproject.toml, nothing of torch.
    import re
    import tomllib

    dists = {d["name"].lower().replace("_", "-") for d in json.loads(subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True).stdout)}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in project["dependencies"] + project["optional-dependencies"]["dask"]}
    assert wanted <= dists, wanted - dists
    assert not {d for d in dists if d.startswith(("torch", "nvidia-", "triton", "onnxscript"))}
    # The installed copy, not the source tree, is what runs.
    where = subprocess.run([str(py), "-c", "import autoenc; print(autoenc.__file__)"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert str(venv) in where
    listed = json.loads(subprocess.run([str(venv / "bin/autoenc"), "models", "--json"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    shipped = sorted(p.stem for p in (REPO / "autoenc/pretrained").glob("*.onnx"))
    assert sorted(m["name"] for m in listed) == shipped  # the shipped models come with the package
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(50, 60, 3)).save(src / "photo.jpg", quality=90)
    sf.write(src / "voice.flac", tone(0.6), 16000)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "ph"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    d = subprocess.run([str(venv / "bin/autoenc"), "denoise", "--model", str(gray_model), "--model", str(audio_model), str(src), str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert d.returncode == 0, d.stdout[-2000:] + d.stderr[-2000:]
    assert output_files(tmp_path / "out") == ["photo.jpg", "voice.flac"]
    assert "2 written" in d.stdout
