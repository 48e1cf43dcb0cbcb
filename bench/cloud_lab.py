"""A user's cloud image in a lab: how long until two guests of it are up?

Each round: `vnetlab up` of a lab with two guests of the cloud image the image tests build
(tests/support/cloud_image.py: Debian 12, cloud-init, booted by its own bootloader), timed until
the command returns (both guests answer SSH with their pinned keys, their addresses are set),
then `vnetlab down` (not timed). The guests are restored from their warm image (made once before
the rounds, not timed); with --cold-rounds N (default 1) the same lab is also brought up booted,
N times, for comparison. Issue 28's target: up in at most 10 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the image tests' cloud image
from support.cloud_image import ensure_cloud_image  # noqa: E402

from common import record  # noqa: E402  (bench/common.py, beside this script)

TARGET_SECONDS = 10.0
LAB = "bench-cloud"


def scenario(image: Path) -> str:
    return (
        "name: bench-cloud\n"
        "bridges: [{name: br0, subnet: 10.1.1.0/24}]\n"
        "vms:\n"
        f"  - {{name: c1, image: {{file: {image}}}, nics: [{{bridge: br0, address: 10.1.1.2/24}}]}}\n"
        f"  - {{name: c2, image: {{file: {image}}}, nics: [{{bridge: br0, address: 10.1.1.3/24}}]}}\n"
        "checks:\n"
        "  - ping: {from: c1, to: c2}\n"
    )


def up_and_down(path: Path, lab: str, *extra: str) -> float:
    """Seconds `vnetlab up` took; the lab is brought down after."""
    start = time.monotonic()
    up = subprocess.run([sys.executable, "-m", "vnetlab", "up", str(path), "--name", lab, "--quiet", "--boot-timeout", "900", *extra], capture_output=True, text=True)
    seconds = time.monotonic() - start
    down = subprocess.run([sys.executable, "-m", "vnetlab", "down", lab, "-q"], capture_output=True, text=True)
    if up.returncode != 0 or down.returncode != 0:
        raise SystemExit(f"vnetlab up/down failed:\n{up.stdout}\n{up.stderr}\n{down.stdout}\n{down.stderr}")
    return seconds


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="warm `vnetlab up`s (default 3)")
    parser.add_argument("--cold-rounds", type=int, default=1, metavar="N", help="booted `vnetlab up --cold`s for comparison (default 1; ~2 min each under TCG)")
    parser.add_argument("--lab", default=LAB, metavar="NAME", help=f"the lab's name (default {LAB}); another lets it run beside a benchmark of the same name on this host")
    args = parser.parse_args()
    image = ensure_cloud_image()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cloud.yaml"
        path.write_text(scenario(image))
        print(f"warm image made or found: first up {up_and_down(path, args.lab):.2f} s (not timed)", flush=True)
        warm = []
        for n in range(1, max(1, args.rounds) + 1):
            warm.append(up_and_down(path, args.lab))
            print(f"round {n}: two cloud guests up, restored: {warm[-1]:6.2f} s", flush=True)
        cold = []
        for n in range(1, args.cold_rounds + 1):
            cold.append(up_and_down(path, args.lab, "--cold"))
            print(f"cold round {n}: two cloud guests up, booted: {cold[-1]:6.2f} s", flush=True)
    median = statistics.median(warm)
    cold_text = f"{statistics.median(cold):.2f} s booted (--cold, {len(cold)} round(s))" if cold else "not measured"
    print(f"median: {median:.2f} s restored (range {min(warm):.2f}-{max(warm):.2f}); {cold_text}; target ≤ {TARGET_SECONDS:.0f} s — {'met' if median <= TARGET_SECONDS else 'NOT met'}")
    record("two-guest cloud-image lab up, warm start", f"{median:.2f} s", cold_text, f"{median / statistics.median(cold):.2f}× the booted lab" if cold else "—",
           len(warm), f"target ≤ {TARGET_SECONDS:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
