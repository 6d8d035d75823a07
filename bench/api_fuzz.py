"""The API fuzz test at depth: schemathesis's coverage phase (every boundary of every schema) and
many generated examples per operation, on SQLite and on PostgreSQL (issue 14's "longer in bench/").

    .venv/bin/python bench/api_fuzz.py [--examples 500]

The suite runs the same test with 8 examples per operation and no coverage phase (tests/server/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="generated cases per operation (default 500)")
    args = parser.parse_args()
    env = {**os.environ, "VMQOS_FUZZ_EXAMPLES": str(args.examples), "VMQOS_FUZZ_COVERAGE": "1"}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests/server/test_fuzz.py")],
                           cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
