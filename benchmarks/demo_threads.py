"""Time `python -m minunet demo` on a quiet machine and beside busy processes, with
minunet's default BLAS threads and with --threads 1 (and any other counts asked for).

    python benchmarks/demo_threads.py                       # quiet and 2 busy; default and 1 thread
    python benchmarks/demo_threads.py --busy 2 --threads default,1,2
    python benchmarks/demo_threads.py --quick               # a 4x smaller demo, to try the script

A busy process is a pure-Python loop (one core each, no BLAS of its own). Before timing
beside them, the script waits until the 1-minute load average has risen by most of
their number (at most --settle seconds), since minunet's default reads that average.
The demo's own output names the thread count it used and its Dice. Timings on a
shared machine are noisy: compare runs made in the same quiet window.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = "while True: pass"


def run_demo(threads, out, quick):
    cmd = [sys.executable, "-m", "minunet", "demo", "--quiet", "--overwrite", "--out", str(out)]
    if threads != "default":
        cmd += ["--threads", threads]
    if quick:
        cmd += ["--n-train", "120", "--epochs", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(v, None)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode:
        sys.exit(f"demo failed: {done.stderr.strip()}")
    used = re.search(r"backend \w+, (.*?)$", done.stdout, re.M)
    dice = re.search(r"mean Dice ([\d.]+)", done.stdout)
    return elapsed, used.group(1) if used else "?", dice.group(1) if dice else "?", load


def settle(n_busy, base, limit):
    """Wait until the 1-minute load average shows most of the busy processes."""
    t = time.time()
    while time.time() - t < limit and os.getloadavg()[0] < base + 0.75 * n_busy:
        time.sleep(5)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", default="0,2", help="numbers of busy processes beside the demo (default %(default)s)")
    p.add_argument("--threads", default="default,1", help="thread settings to time (default %(default)s)")
    p.add_argument("--settle", type=float, default=90, help="seconds to wait for the load average (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smaller demo (120 slices, 2 epochs)")
    args = p.parse_args()
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'busy':>4}  {'--threads':>9}  {'threads used':<18} {'load at start':>13} {'time (s)':>9}  Dice")
    with tempfile.TemporaryDirectory() as tmp:
        for n_busy in map(int, args.busy.split(",")):
            base = os.getloadavg()[0]
            hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n_busy)]
            try:
                if n_busy:
                    settle(n_busy, base, args.settle)
                for threads in args.threads.split(","):
                    elapsed, used, dice, load = run_demo(threads, Path(tmp) / "demo", args.quick)
                    print(f"{n_busy:>4}  {threads:>9}  {used:<18} {load:>13.2f} {elapsed:>9.1f}  {dice}", flush=True)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()


if __name__ == "__main__":
    main()
