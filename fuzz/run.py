"""The long fuzzing run: the properties of tests/test_fuzz.py with random (not derandomized)
examples, many more of them. Prints pytest's summary; any failure is a bug to fix.

    python fuzz/run.py [--examples 3000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=3000, help="examples per reader property (the job property gets 1/8)")
    args = ap.parse_args()
    env = dict(os.environ, AUTOENC_FUZZ_EXAMPLES=str(args.examples), AUTOENC_FUZZ_LONG="1")
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics", str(REPO / "tests/test_fuzz.py")], env=env, cwd=REPO))
