"""Benchmark one U-Net training step and inference: minunet, and (when installed) PyTorch
and Keras on the same architecture, in the same run.

    python benchmarks/bench.py                       # depth 5, 128x128, batch 8, base 8,16,32,64
    python benchmarks/bench.py --base 16,64 --compare torch,keras --rounds 3 --breakdown
    python benchmarks/bench.py --unset-openblas      # also rerun with OPENBLAS_* removed
    python benchmarks/bench.py --backend cupy        # minunet on a GPU

A training step is forward + softmax cross-entropy + backward + Adam; inference is the
forward pass and the softmax. Each (framework, base, mode) runs in its own process, so
the peak resident memory reported (VmHWM) is that of the step alone, plus the
interpreter and the framework's import. Times are the median (and min..max) of --repeat runs after
--warmup runs; with --rounds R every framework runs R times, taking turns, and the median is
over all R * repeat steps (on a shared machine a slow spell then falls on every framework).
Not a test: the numbers belong to the machine.
"""
import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

N, SIZE, DEPTH = 8, 128, 5


# ------------------------------------------------------------------ workers
def conv_flops(depth, base, size=SIZE, n=N):
    """FLOPs of the convolutions in one training step: forward, and the two backward
    products (weights and inputs), each 2 * multiply-adds."""
    macs, h, c = 0, size, 1
    for k in range(depth):                                   # encoder: two 3x3 convs per level
        f = base * 2**k
        macs += h * h * 9 * (c * f + f * f)
        c, h = f, h // 2
    f = base * 2**depth
    macs += h * h * 9 * (c * f + f * f)                      # bridge
    c = f
    for k in reversed(range(depth)):
        f, h = base * 2**k, h * 2
        macs += (h // 2) ** 2 * 4 * c * f                    # ConvTranspose 2x2/2
        macs += h * h * 9 * (2 * f * f + f * f)              # concat -> conv, conv
        c = f
    macs += h * h * c * 2                                    # 1x1 head
    return 3 * 2 * macs * n


def _timeit(fn, warmup, repeat, sync=lambda: None, after_warmup=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    after_warmup()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return times


def worker_minunet(base, mode, args):
    import minunet
    from minunet import backend, losses
    from minunet.layers import conv as conv_module
    from minunet.layers import engine

    if args.backend == "cupy":
        backend.use("cupy")
    xp = backend.xp()
    sync = (lambda: xp.cuda.Device().synchronize()) if args.backend == "cupy" else (lambda: None)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((N, SIZE, SIZE, 1)).astype(np.float32))
    t = xp.asarray(rng.integers(0, 2, (N, SIZE, SIZE)))
    model = minunet.UNet(depth=DEPTH, base_filters=base)
    opt = minunet.Adam(model.params)
    parts = {}

    phase = ["Conv2D forward"]        # which Conv2D pass the products and copies below belong to

    def add(name, seconds):
        parts[name] = parts.get(name, 0.0) + seconds

    def timed(name, fn, sets_phase=False):
        def wrapper(*a, **k):
            if sets_phase:
                phase[0] = name
            start = time.perf_counter()
            out = fn(*a, **k)
            sync()
            add(name, time.perf_counter() - start)
            return out
        return wrapper

    def timed_in_phase(suffix, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            sync()
            add(f"  {phase[0]}: {suffix}", time.perf_counter() - start)
            return out
        return wrapper

    def timed_generator(suffix, fn):
        def wrapper(*a, **k):                  # the time spent making each item, not the caller's
            items = fn(*a, **k)
            while True:
                start = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    sync()
                    add(f"  {phase[0]}: {suffix}", time.perf_counter() - start)
                yield item
        return wrapper

    if mode == "parts":                        # a separate run: the wrappers cost time of their own
        from minunet.layers import Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, ReLU, UpSampling2D

        engine.im2col_blocks = timed_generator("im2col blocks (window copies)", engine.im2col_blocks)
        conv_module.correlate = timed_in_phase("correlations (products + im2col)", conv_module.correlate)
        conv_module.kernel_gradient = timed_in_phase("weight gradient (products + im2col)", conv_module.kernel_gradient)
        Conv2D.forward = timed("Conv2D forward", Conv2D.forward, sets_phase=True)
        Conv2D.backward = timed("Conv2D backward", Conv2D.backward, sets_phase=True)
        for cls in (ConvTranspose2D, MaxPool2D, UpSampling2D, ReLU, Concatenate):
            cls.forward = timed(f"{cls.__name__} forward", cls.forward)
            cls.backward = timed(f"{cls.__name__} backward", cls.backward)
        loss_fn = timed("loss (softmax cross-entropy)", losses.softmax_cross_entropy)
        step_fn = timed("Adam step", opt.step)
    else:
        loss_fn, step_fn = losses.softmax_cross_entropy, opt.step

    def train():
        _, d = loss_fn(model.forward(x), t)
        model.backward(d, input_gradient=False)     # as in PyTorch and Keras: no dL/dx for the images
        step_fn(model.grads)

    def infer():
        model.activation(model.forward(x, training=False))

    times = _timeit(infer if mode == "infer" else train, args.warmup, args.repeat, sync, parts.clear)
    return times, {k: v / args.repeat for k, v in parts.items()}


def torch_unet(base):
    """The same U-Net in PyTorch (NCHW, as a PyTorch user writes it): depth 5, ``base`` filters."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            f = [base * 2**k for k in range(DEPTH + 1)]
            self.down = nn.ModuleList([block(1 if k == 0 else f[k - 1], f[k]) for k in range(DEPTH)])
            self.bridge = block(f[DEPTH - 1], f[DEPTH])
            self.ups = nn.ModuleList([nn.ConvTranspose2d(f[k + 1], f[k], 2, stride=2) for k in reversed(range(DEPTH))])
            self.up_blocks = nn.ModuleList([block(2 * f[k], f[k]) for k in reversed(range(DEPTH))])
            self.head = nn.Conv2d(f[0], 2, 1)

        def forward(self, x):
            skips = []
            for b in self.down:
                x = b(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.bridge(x)
            for up, b, s in zip(self.ups, self.up_blocks, reversed(skips)):
                x = b(torch.cat([up(x), s], 1))
            return self.head(x)

    torch.set_num_threads(os.cpu_count())
    return UNet()


def worker_torch(base, mode, args):
    import torch
    from torch import nn

    model = torch_unet(base)
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(N, 1, SIZE, SIZE)
    t = torch.randint(0, 2, (N, SIZE, SIZE))

    def train():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), t).backward()
        opt.step()

    def infer():
        with torch.inference_mode():
            torch.softmax(model(x), 1)

    return _timeit(train if mode == "train" else infer, args.warmup, args.repeat), {}


def worker_keras(base, mode, args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tempfile

    import keras

    import minunet
    from minunet import keras_h5

    # the same network, by way of minunet's Keras export: one definition of the architecture
    with tempfile.TemporaryDirectory() as tmp:
        keras_h5.save(minunet.UNet(depth=DEPTH, base_filters=base), f"{tmp}/unet.h5", input_size=SIZE)
        model = keras.models.load_model(f"{tmp}/unet.h5", compile=False)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, SIZE, SIZE, 1)).astype(np.float32)
    t = rng.integers(0, 2, (N, SIZE, SIZE))

    def train():
        model.train_on_batch(x, t)

    def infer():
        model.predict_on_batch(x)

    return _timeit(train if mode == "train" else infer, args.warmup, args.repeat), {}


WORKERS = {"minunet": worker_minunet, "torch": worker_torch, "keras": worker_keras}


# ------------------------------------------------------------------- parent
def blas_info():
    try:
        from threadpoolctl import threadpool_info

        return "; ".join(f"{i['internal_api']} {i['version']} ({i['architecture']} kernels, {i['num_threads']} threads)"
                         for i in threadpool_info() if i["user_api"] == "blas") or "unknown"
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"


def gemm_rate(repeat=5):
    """GFLOP/s of a matrix product of the step's typical shape, (131072, 576) @ (576, 64)."""
    a = np.random.default_rng(0).standard_normal((N * SIZE * SIZE, 576)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((576, 64)).astype(np.float32)
    t = min(_timeit(lambda: a @ b, 1, repeat))
    return 2 * a.shape[0] * 576 * 64 / t / 1e9


def peak_memory_mib():
    """Peak resident memory of this process: VmHWM (Linux; reset by exec, unlike ru_maxrss,
    which a child inherits from the parent it was forked from), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(framework, base, mode, args):
    cmd = [sys.executable, __file__, "--worker", f"{framework}:{base}:{mode}", "--repeat", str(args.repeat),
           "--warmup", str(args.warmup), "--backend", args.backend]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(runs):
    """One result from the rounds' worker runs: median (min..max) over all their timed
    steps, the largest peak memory, the parts of the first run."""
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        return {"error": errors[0]}
    times = [t for r in runs for t in r["times"]]
    return {"median": float(np.median(times)), "min": min(times), "max": max(times),
            "peak_mib": max(r["peak_mib"] for r in runs), "parts": runs[0]["parts"]}


def available(framework):
    """Whether a framework is installed, found without importing it here (importing
    TensorFlow in the parent would print its start-up log and hold its memory)."""
    return framework == "minunet" or importlib.util.find_spec(framework) is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="8,16,32,64", help="base filter counts (default %(default)s)")
    parser.add_argument("--compare", default="", help="also time these: torch,keras")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="run every framework this many times, in turns")
    parser.add_argument("--breakdown", action="store_true", help="minunet's time per part of the step")
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    parser.add_argument("--unset-openblas", action="store_true", help="then rerun with OPENBLAS_* removed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        framework, base, mode = args.worker.split(":")
        times, parts = WORKERS[framework](int(base), mode, args)
        peak = peak_memory_mib()
        print(json.dumps({"times": times, "peak_mib": peak, "parts": parts}))
        return

    frameworks = ["minunet"] + [f for f in args.compare.split(",") if f]
    print(f"U-Net depth {DEPTH}, {SIZE}x{SIZE}, batch {N}, float32; median (min..max) of {args.rounds} x {args.repeat} "
          f"steps after {args.warmup} warm-up")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numpy {np.__version__}; BLAS: {blas_info()}")
    print("OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)") + "  OPENBLAS_L2_SIZE="
          + os.environ.get("OPENBLAS_L2_SIZE", "(unset)") + f"; matrix product (131072x576 @ 576x64): {gemm_rate():.0f} GFLOP/s")
    for f in frameworks[1:]:
        if not available(f):
            print(f"{f}: not installed, skipped")
    frameworks = [f for f in frameworks if available(f)]
    header = f"{'base':>4} {'GFLOP':>6} {'framework':<9} {'train step (s)':>22} {'GFLOP/s':>8} {'inference (s)':>22} {'peak MiB':>9}"
    print(header)
    results = {}
    for base in [int(b) for b in args.base.split(",")]:
        flops = conv_flops(DEPTH, base) / 1e9
        runs = {f: ([], []) for f in frameworks}
        for _ in range(args.rounds):             # frameworks take turns: a slow spell of the machine
            for f in frameworks:                 # falls on all of them, not on one
                runs[f][0].append(run_worker(f, base, "train", args))
                runs[f][1].append(run_worker(f, base, "infer", args))
        for f in frameworks:
            tr, inf = summarize(runs[f][0]), summarize(runs[f][1])
            results[(base, f)] = (tr, inf)
            if "error" in tr or "error" in inf:
                print(f"{base:>4} {flops:>6.1f} {f:<9} error: {tr.get('error') or inf.get('error')}")
                continue
            fmt = lambda r: f"{r['median']:.3f} ({r['min']:.3f}..{r['max']:.3f})"  # noqa: E731
            print(f"{base:>4} {flops:>6.1f} {f:<9} {fmt(tr):>22} {flops / tr['median']:>8.0f} {fmt(inf):>22} {tr['peak_mib']:>9.0f}")
        ref = results[(base, "minunet")][0]
        for f in frameworks[1:]:
            other = results[(base, f)]
            if "error" not in other[0] and "error" not in ref:
                print(f"{'':>11} minunet / {f}: train {ref['median'] / other[0]['median']:.2f}x, "
                      f"inference {results[(base, 'minunet')][1]['median'] / other[1]['median']:.2f}x, "
                      f"memory {ref['peak_mib'] / other[0]['peak_mib']:.2f}x")
        if args.breakdown:
            timed_parts = summarize([run_worker("minunet", base, "parts", args)])
            parts = timed_parts.get("parts", {})
            print(f"{'':>11} minunet step by part (base {base}; a separate run with timers, {timed_parts.get('median', 0):.3f} s a step):")
            for name, secs in sorted(((k, v) for k, v in parts.items() if not k.startswith(" ")), key=lambda kv: -kv[1]):
                print(f"{'':>13} {name:<58} {secs:>7.3f} s")
                for sub in sorted(k for k in parts if k.startswith(f"  {name}:")):   # the parts inside it
                    print(f"{'':>13} {'  of which ' + sub.split(': ', 1)[1]:<58} {parts[sub]:>7.3f} s")

    if args.unset_openblas:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
        print("\n--- again with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset ---", flush=True)
        argv = [a for a in sys.argv[1:] if a != "--unset-openblas"]
        subprocess.run([sys.executable, __file__, *argv], env=env, check=False)


if __name__ == "__main__":
    main()
