"""Password hashes checked from many pool threads at once, first thing after start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# SHA-512-crypt of "secret" with salt "abcdefgh" (openssl passwd -6 -salt abcdefgh)
HASH = (
    "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip"
    "/cZ/1GM/O6IND4WQhG."
)

SCRIPT = """
import sys, threading
from dantex.auth.passwd import verify_hash
barrier = threading.Barrier(16)
results = []
def check():
    barrier.wait(10)
    try:
        results.append(verify_hash(sys.argv[1], b"secret"))
    except Exception as e:
        results.append(repr(e))
threads = [threading.Thread(target=check) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
print(results)
"""


def test_first_checks_in_parallel_threads_all_succeed() -> None:
    """16 threads verifying at once in a fresh process all get True (no import race)."""
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, HASH],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert out.stdout.strip() == str([True] * 16), out.stdout + out.stderr
