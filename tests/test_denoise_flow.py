"""The denoise flow as users run it: batches on the thread pool or a local Dask cluster, the
artifacts every run publishes, and the terminal progress bar."""

from __future__ import annotations

import io
import os
import re

import soundfile as sf
from PIL import Image

from autoenc.runtime.job_summary import ProgressBar, files_table
from autoenc.runtime.jobs import FileResult, JobReport, state_dir_for
from autoenc.runtime.ledger import Ledger
from conftest import output_files, photo, tone


def _artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC)


def test_dask_runner_spreads_batches_over_two_workers(tmp_path, prefect_api, gray_model):
    from pipelines.denoise import denoise_flow

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(8):
        Image.fromarray(photo(40, 40, 1, seed=i)).save(src / f"f{i}.png")
    (src / "bad.png").write_bytes(b"nope")
    state = denoise_flow([str(gray_model)], str(src), str(dst), batch_size=1, runner="dask", workers=2, threads=1, return_state=True)
    assert state.is_failed() and state.message.startswith("1 of 9 files failed")  # visible to the UI and automations
    out = state.result(raise_on_failure=False)
    assert out["counts"] == {"written": 8, "unchanged": 0, "skipped": 0, "failed": 1}
    assert output_files(dst) == [f"f{i}.png" for i in range(8)]
    with Ledger(state_dir_for(dst)) as ledger:
        pids = {w.rsplit(":", 1)[1] for w in ledger.workers().values()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two Dask worker processes did the work


def test_flow_publishes_tables_report_and_progress(tmp_path, prefect_api, gray_model, audio_model):
    from pipelines.denoise import denoise_flow

    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo(64, 80, 1, seed=i)).save(src / "sub" / f"p{i}.png")
    sf.write(src / "voice.wav", tone(1.0), 16000)
    (src / "notes.txt").write_text("not media")
    state = denoise_flow([str(gray_model), str(audio_model)], str(src), str(dst), batch_size=2, job="Art Job", report_samples=4, return_state=True)
    assert state.is_completed()  # nothing failed (notes.txt is skipped with its reason)
    out = state.result()
    assert out["counts"]["written"] == 4
    with Ledger(state_dir_for(dst)) as ledger:  # the ledger names the Prefect flow run that wrote each file
        assert {e.run_id for e in ledger.entries().values()} == {str(state.state_details.flow_run_id)}
    counts = _artifacts("art-job-counts")[0]
    assert counts.type == "table" and '"written": 4' in counts.data.replace("'", '"')
    files = _artifacts("art-job-files")[0].data
    assert "notes.txt" in files and "not a supported" in files
    md = _artifacts("art-job-report")[0].data
    assert md.count("data:image/jpeg;base64,") == 4  # 3 thumbnails + 1 spectrogram, all written files sampled
    assert "voice.wav" in md and "notes.txt" in md
    progress = _artifacts("art-job-progress")[0]
    assert progress.type == "progress" and float(progress.data) == 100.0
    # A rerun has nothing to do: it publishes its counts but not a new report or files table,
    # so the last useful report stays the latest one.
    again = denoise_flow([str(gray_model), str(audio_model)], str(src), str(dst), job="Art Job")
    assert again["counts"]["unchanged"] == 4 and again["counts"]["written"] == 0
    assert len(_artifacts("art-job-report")) == 1 and len(_artifacts("art-job-files")) == 1 and len(_artifacts("art-job-counts")) == 2


def test_files_table_is_bounded_and_progress_bar_draws():
    results = [FileResult(f"f{i:05d}.png", "written") for i in range(2000)] + [FileResult("bad.png", "failed", "cannot decode")]
    table = files_table(JobReport("in", "out", {}, results, 1.0), limit=100)
    assert len(table) == 100 and table[0]["path"] == "bad.png" and table[-1]["path"] == "... 1902 more"
    buf = io.StringIO()
    bar = ProgressBar(10, stream=buf, force=True)
    bar.update(5, pixels=2e6)
    assert re.search(r"\[#{12} {12}\] 5/10 files  [\d.]+ files/s  [\d.]+ MP/s  ETA \d+s$", bar.line())
    # A log record lands on its own line above the bar, which is drawn again under it.
    import logging

    from autoenc.runtime.job_summary import BarLogHandler

    handler = BarLogHandler(buf)
    logger = logging.getLogger("autoenc.test-bar")
    logger.addHandler(handler)
    logger.warning("failed x.png: cannot decode")
    logger.removeHandler(handler)
    assert "\r\033[Kfailed x.png: cannot decode\n" in buf.getvalue() and "] 5/10 files" in buf.getvalue().rsplit("\n", 1)[1]
    bar.update(5)
    bar.close()
    assert "10/10 files" in buf.getvalue() and "in " in buf.getvalue().splitlines()[-1]
    silent = io.StringIO()
    ProgressBar(10, stream=silent).update(3)  # not a tty: no output
    assert silent.getvalue() == ""


def test_report_pictures_show_detail_at_1_to_1_and_labelled_spectrograms(tmp_path):
    """A large photo's report picture crops its most detailed region at full resolution; a
    recording's spectrogram carries frequency and time labels."""
    import numpy as np
    from autoenc.runtime.job_summary import before_after_picture
    from autoenc.runtime.report import detail_window

    flat = np.full((600, 900), 128, np.uint8)
    flat[400:460, 700:780] = (np.random.default_rng(0).random((60, 80)) * 255).astype(np.uint8)  # the only texture
    y, x = detail_window(flat, 100)
    assert 360 <= y <= 400 and 680 <= x <= 700
    Image.fromarray(flat).convert("RGB").save(tmp_path / "a.png")
    pic = before_after_picture(tmp_path / "a.png", tmp_path / "a.png", "image", size=100)
    assert pic.height == 100 + 14
    crop = np.asarray(pic)[14:, -100:]  # the 1:1 "denoised" panel: the textured patch, not a downscale
    assert crop.std() > 30
    sf.write(tmp_path / "v.wav", tone(2.0), 16000)
    spec = before_after_picture(tmp_path / "v.wav", tmp_path / "v.wav", "audio")
    arr = np.asarray(spec.convert("L"))
    assert (arr[:, :30] < 128).any()  # axis labels drawn in the left margin
