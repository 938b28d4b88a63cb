"""Speech quality benchmark: a speech model vs classical enhancers on the same held-out
utterances and the same noisy inputs, in one process. Utterances: the validation split of the
model's training run (manifest.csv: 10% of the Asterisk prompts by file hash, never trained on);
music noise from the held-out music recordings; babble from other held-out utterances. Noise
types white, pink, hum, music, babble at SNR 0 / 5 / 10 dB, first 4 s of each utterance.

Baselines (noise PSD from the quietest 10% of frames, STFT 512/128 Hann):
decision-directed Wiener (Ephraim-Malah, alpha 0.98, gain floor -20 dB), power spectral
subtraction (over-subtraction 2, floor 0.02), and noisereduce (non-stationary, PyPI).

    python benchmarks/audio_quality.py --run runs/speech [--model speech] [--utterances 6]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.signal import istft, stft

REPO = Path(__file__).resolve().parents[1]

from autoenc.metrics import pesq_wb, si_sdr
from image_speed import machine

SR = 16000


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


def noisy_set(run: Path, n_utt: int) -> list[dict]:
    """Noisy/clean pairs for every noise type x SNR over the first ``n_utt`` val utterances."""
    from autoenc.config import NoiseConfig, from_dict
    from autoenc.corpus import resolve_data_root
    from autoenc.data import load_clip, read_manifest, val_segments
    from autoenc.data import music_banks

    cfg = from_dict(json.loads((run / "config.json").read_text()))
    val = [e.path for e in read_manifest(run / "manifest.csv") if e.split == "val"][:n_utt]
    root = resolve_data_root(cfg.data.root, cfg.data.corpus_dir, "audio")
    speech = [load_clip(root / f, SR) for f in val]
    _, music_val = music_banks(cfg, SR)
    data = cfg.data.model_copy(update={"max_val_images": None, "max_val_seconds": 4.0})
    items = []
    for kind in ["white", "pink", "hum", "music", "babble"]:
        for snr in [0, 5, 10]:
            noise = NoiseConfig.model_validate({"mixture": [{"name": kind, "snr_db": snr}], "quantize_bits": 16})
            for j, clip in enumerate(speech):
                (noisy, clean), = val_segments([clip], data, noise, 1234, f"bench-{kind}-{snr}-{j}", {"speech": speech[:j] + speech[j + 1 :], "music": music_val})
                items.append({"noise": kind, "snr": snr, "noisy": noisy[0].numpy(), "clean": clean[0].numpy()})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True, help="the model's training run folder (manifest.csv, config.json)")
    ap.add_argument("--model", default="speech")
    ap.add_argument("--utterances", type=int, default=6)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/audio_quality.json"))
    args = ap.parse_args()
    import noisereduce

    from autoenc.runtime.audio_infer import OnnxAudioDenoiser

    den = OnnxAudioDenoiser(args.model, threads=2)
    methods = {
        "noisy input": lambda x: x,
        f"autoenc {args.model}": lambda x: den.denoise(x[:, None])[:, 0],
        "Wiener (decision-directed)": wiener_dd,
        "spectral subtraction": spectral_subtraction,
        "noisereduce": lambda x: noisereduce.reduce_noise(y=x, sr=SR).astype(np.float32),
    }
    items = noisy_set(Path(args.run), args.utterances)
    clean = [it["clean"] for it in items if it["noise"] == "white" and it["snr"] == 0]  # each utterance once
    rows = []
    for name, fn in methods.items():
        t0, audio_s = time.perf_counter(), 0.0
        for it in items:
            it[name] = fn(it["noisy"])
            audio_s += len(it["noisy"]) / SR
        rtf = (time.perf_counter() - t0) / audio_s
        for kind in ["white", "pink", "hum", "music", "babble"]:
            for snr in [0, 5, 10]:
                sel = [it for it in items if it["noise"] == kind and it["snr"] == snr]
                rows.append({"method": name, "noise": kind, "snr": snr, "si_sdr": float(np.mean([si_sdr(i["clean"], i[name]) for i in sel])), "pesq": float(np.nanmean([pesq_wb(i["clean"], i[name]) for i in sel])), "rtf": rtf})
        # A clean input: how much does each method change it?
        outs = [fn(c) for c in clean]
        rows.append({"method": name, "noise": "none (clean input)", "snr": None, "si_sdr": float(np.mean([si_sdr(c, o) for c, o in zip(clean, outs)])), "pesq": float(np.nanmean([pesq_wb(c, o) for c, o in zip(clean, outs)])), "rtf": rtf})
        print(f"{name}: mean SI-SDR {np.mean([r['si_sdr'] for r in rows if r['method'] == name and r['snr'] is not None]):.2f} dB, RTF {rtf:.4f}", flush=True)
    names = list(methods)
    print(f"\n{args.utterances} held-out utterances x 5 noises x 3 SNRs, first 4 s; SI-SDR dB / PESQ-WB\n")
    print("| noise | SNR | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
    for kind in ["white", "pink", "hum", "music", "babble"]:
        for snr in [0, 5, 10]:
            cells = [next(r for r in rows if r["method"] == m and r["noise"] == kind and r["snr"] == snr) for m in names]
            print(f"| {kind} | {snr} | " + " | ".join(f"{c['si_sdr']:.1f} / {c['pesq']:.2f}" for c in cells) + " |")
    noisy_rows = [r for r in rows if r["snr"] is not None]
    means = [(m, np.mean([r["si_sdr"] for r in noisy_rows if r["method"] == m]), np.nanmean([r["pesq"] for r in noisy_rows if r["method"] == m])) for m in names]
    print("| **mean** | | " + " | ".join(f"**{s:.1f} / {p:.2f}**" for _, s, p in means) + " |")
    cells = [next(r for r in rows if r["method"] == m and r["snr"] is None) for m in names]
    print("| clean input | ∞ | " + " | ".join(f"{c['si_sdr']:.1f} / {c['pesq']:.2f}" for c in cells) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "utterances": args.utterances, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
