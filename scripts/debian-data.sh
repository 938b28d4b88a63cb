#!/usr/bin/env bash
# Install the Debian data packages the project trains on, if missing: Asterisk speech and music
# (decoded to WAV) and Fashion-MNIST. Never fails the calling make target: where it cannot
# install, it says so and the parts that need the data skip (their tests fail under CI=true).
# Usage: scripts/debian-data.sh PYTHON [--wide]
#   --wide: only unpack the packages of the wider photo corpus (autoenc.corpus.WIDE_PHOTOS,
#   ~140 MB) and build it (data.corpus: photos-wide); `make wide-data`.
set -euo pipefail
PY=${1:-python3}
CACHE=${AUTOENC_CACHE:-$HOME/.cache/autoenc}

unpack() {  # apt-get download + dpkg-deb -x each package into $CACHE/debian/<package>, once
  for p in "$@"; do
    dest="$CACHE/debian/$p"
    [ -f "$dest/.extracted" ] && continue
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -qq "$p" >/dev/null 2>&1) && mkdir -p "$dest" && dpkg-deb -x "$tmp"/*.deb "$dest"; then
      touch "$dest/.extracted"
    else
      echo "data: could not unpack $p (apt-get download); photos or camera noise from it will be missing" >&2
    fi
    rm -rf "$tmp"
  done
}

if [ "${2:-}" = "--wide" ]; then
  unpack endless-sky-high-dpi
  "$PY" -c "from autoenc.corpus import build_photo_corpus; print('data:', build_photo_corpus(wide=True))"
  exit 0
fi
PKGS="asterisk-core-sounds-en-g722 asterisk-moh-opsound-g722 dataset-fashion-mnist"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"  # never prompt: a make target must not hang
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "data: installing$missing"
    if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; }; then
      echo "data: apt-get could not install$missing; the parts that need them will be skipped (their tests fail under CI=true)." >&2
      exit 0
    fi
  else
    echo "data: cannot install$missing here (needs apt-get as root)." >&2
    echo "  Install them, or point data.root / data.music_dir at your own data." >&2
    echo "  Tests that need them will be skipped (they fail under CI=true)." >&2
    exit 0
  fi
fi
# Photo and voice packages and darktable's measured camera noise profiles are only unpacked (apt-get
# download + dpkg-deb -x) into $AUTOENC_CACHE/debian/<package>: nothing else of theirs is needed,
# and darktable installed would pull in hundreds of MB of libraries.
unpack mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 palapeli-data darktable fillets-ng-data-cs fillets-ng-data-nl hedgewars-data klettres-data
"$PY" -c "from autoenc.corpus import build_benchmark_photos, build_photo_corpus; print('data:', build_photo_corpus(), build_benchmark_photos())" || echo "data: photo corpus not complete (see above)" >&2
"$PY" -c "from autoenc.corpus import build_music_bank, build_speech_corpus; print('data:', build_speech_corpus(), build_music_bank())" || echo "data: speech corpus not prepared (see above)" >&2
"$PY" -c "from autoenc.voices import build_benchmark_voices, build_effects_bank, build_voice_corpus; print('data:', build_voice_corpus(), build_benchmark_voices(), build_effects_bank())" || echo "data: voice corpus not complete (see above)" >&2
