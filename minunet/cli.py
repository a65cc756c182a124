"""The ``minunet`` command: demo, train, evaluate, predict, summary, gradcheck, convert, phantom.

    minunet demo                      # phantom data, a small U-Net on the CPU, Dice on held-out slices
    minunet train --epochs 100 --depth 5 --base-filters 64      # the seed's full setting
    minunet train --data ../shared/data/real-spine --init minunet-demo/model.h5   # fine-tune on real slices
    minunet train --data ../shared/data/real-spine --init minunet-demo/model.h5 --cv 4   # ... cross-validated
    minunet evaluate --model out/best.h5 --data ../shared/data/real-spine
    minunet predict --model out/best.h5 scans/ --out masks/
    minunet summary --depth 5 --base-filters 64      (or: minunet summary keras_model.h5)
    minunet convert keras_model.h5 minunet_model.h5   (and back)
    minunet gradcheck
    minunet phantom --out data.h5 --n 500 --seed 0

Bad arguments, missing files and bad data end with one line on stderr and exit code 2.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, backend

# The demo: small enough for a 2-core CPU in a few minutes, large enough to segment discs.
DEMO = dict(depth=4, base_filters=8, size=128, n_train=480, n_val=32, n_test=64, epochs=8,
            batch_size=8, lr=3e-3, loss="ce+dice", seed=0)


# Fine-tuning (train --init): the recipe measured on the 12 real slices in issue 19 (Adam 1e-3,
# cosine decay, 100 epochs, augmentation, ce+dice, at the slices' own 256 px; README: its numbers).
FINETUNE = dict(size=None, epochs=100, batch_size=4, lr=1e-3, loss="ce+dice", augment="strong")

# How every data source normalizes a slice (minunet.data.normalize), recorded in model files.
NORMALIZATION = {"method": "percentile clip, then z-score per slice", "low": 0.5, "high": 99.5}


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


# ------------------------------------------------------------------ helpers
def _load_data(args, split_seed):
    """(train, val, test) arrays from --data or the phantom (and --val-data)."""
    from . import data

    if getattr(args, "data", None) in (None, "phantom"):
        size = args.size or 128
        n = args.n_train + args.n_val + args.n_test
        t = time.time()
        images, masks = data.phantom.generate(n, size=size, seed=args.seed)
        print(f"phantom: {n} slices of {size}x{size} in {time.time() - t:.1f} s")
        a, b = args.n_train, args.n_train + args.n_val
        train, val, test = (images[:a], masks[:a]), (images[a:b], masks[a:b]), (images[b:], masks[b:])
        return train, (_load_val(args, images.shape[1:3]) if args.val_data else val), test
    images, masks = data.load(args.data, size=args.size, label_map=_label_map(args))
    n = len(images)
    val_share = 0.0 if args.val_data else args.val_split
    train, val, test = data.split(n, val=val_share, test=args.test_split, seed=split_seed)
    print(f"{args.data}: {n} slices -> {len(train)} train, {len(val)} validation, {len(test)} test")
    if len(train) == 0:
        raise UsageError(f"{args.data}: too few slices ({n}) to train on")
    for what, idx, flag, share in (("validation", val, "--val-split", val_share), ("test", test, "--test-split", args.test_split)):
        if share and len(idx) < 2:
            left = f"leaves 1 {what} slice, whose score says little" if len(idx) else f"leaves no {what} slice"
            print(f"minunet train: note: {flag} {share:g} of {n} slices {left}; use --cv K"
                  + (" or --val-data PATH" if what == "validation" else ""), file=sys.stderr)
    pick = lambda idx: (images[idx], masks[idx])  # noqa: E731
    val = _load_val(args, images.shape[1:3]) if args.val_data else (pick(val) if len(val) else None)
    return pick(train), val, (pick(test) if len(test) else None)


def _load_val(args, size):
    """The --val-data slices, resampled to the training slices' size."""
    from . import data

    images, masks = data.load(args.val_data, size=tuple(size), label_map=_label_map(args))
    print(f"{args.val_data}: {len(images)} validation slices")
    return images, masks


def _label_map(args):
    spec = getattr(args, "label_map", None)
    if not spec:
        return None
    from .data import SPIDER_DISCS

    if spec == "spider":
        return {**SPIDER_DISCS, "rest": 0}
    try:
        raw = json.loads(spec)
        return {(k if k == "rest" else int(k)): int(v) for k, v in raw.items()}
    except (ValueError, AttributeError):
        raise UsageError(f"--label-map {spec!r}: give JSON like '{{\"1\": 1, \"2\": 0}}' or 'spider'") from None


def _load_model(path):
    """A UNet from a minunet or a Keras .h5 file; errors as one line."""
    from . import load

    try:
        return load(path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


def _metadata(size, label_map):
    """What a model file records about its input (UNet.metadata)."""
    label_map = label_map or {0: 0, 1: 1}
    return {"size": [int(size[0]), int(size[1])], "normalization": NORMALIZATION,
            "label_map": {str(k): int(v) for k, v in label_map.items()}}


def _stored_label_map(model):
    """The label map a model was trained with, from its file (None if not recorded)."""
    stored = (model.metadata or {}).get("label_map")
    return {(k if k == "rest" else int(k)): int(v) for k, v in stored.items()} if stored else None


def _inference_size(args, model, command):
    """(H, W) to run the model at: --size if given (with a one-line notice when it differs
    from the training size), else the size recorded in the model file, else None (each
    input's own size, as files written before minunet recorded it)."""
    trained = (model.metadata or {}).get("size")
    if args.size:
        if trained and [args.size, args.size] != list(trained):
            print(f"minunet {command}: note: --size {args.size} differs from the size the model was trained at "
                  f"({trained[0]}x{trained[1]}); expect a lower Dice", file=sys.stderr)
        return (args.size, args.size)
    if not trained:
        print(f"minunet {command}: note: {args.model} records no training size; running at each input's own size",
              file=sys.stderr)
    return tuple(trained) if trained else None


def segment_at(model, images, size=None, batch_size=8):
    """Label maps (N, H, W) at the images' own resolution, from the model run at ``size``.

    Each normalized image (N, H, W, 1) is resampled bilinearly to ``size`` = (h, w) and
    normalized again (as training slices were: resized, then normalized); the model's class
    probabilities are resampled bilinearly back to (H, W), and the arg-max taken there. So a
    mask comes back at the input's resolution with edges smoother than up-sampled labels."""
    from . import data
    from .model import labels

    n, h, w = images.shape[:3]
    if size is None or tuple(size) == (h, w):
        return model.segment(images, batch_size)
    x = data.normalize(data.resize(images[..., 0], tuple(size)))[..., None]
    probs = np.asarray(model.predict(x, batch_size))                                # (N, h', w', K)
    k = probs.shape[-1]
    planes = probs.transpose(0, 3, 1, 2).reshape(n * k, *probs.shape[1:3])          # (N*K, h', w')
    back = data.resize(planes, (h, w)).reshape(n, k, h, w).transpose(0, 2, 3, 1)   # (N, H, W, K)
    return labels(back)


def _init_model(args):
    """The --init model, its architecture checked against explicit flags."""
    if args.resume:
        raise UsageError("--init starts a new run from a model's weights, --resume continues an interrupted one; give one")
    model = _load_model(args.init)
    for flag, key in (("--depth", "depth"), ("--base-filters", "base_filters"), ("--upsampling", "upsampling")):
        given = getattr(args, key)
        if given is not None and given != model.config[key]:
            raise UsageError(f"{flag} {given} contradicts {args.init}, whose {key.replace('_', ' ')} is "
                             f"{model.config[key]}; drop {flag} (--init takes the architecture from the file)")
    for key in ("depth", "base_filters", "upsampling"):
        setattr(args, key, model.config[key])
    return model


def _fill_defaults(args, finetune):
    """Flags left unset take the demo's defaults, or the fine-tuning recipe's under --init."""
    defaults = {**DEMO, "upsampling": "transpose", "augment": "none", **(FINETUNE if finetune else {})}
    for key in ("size", "depth", "base_filters", "upsampling", "epochs", "batch_size", "lr", "loss", "augment"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])


def _report(summary, title):
    print(title)
    for k in ("dice", "iou", "precision", "recall", "pixel_accuracy", "hd95"):
        if k in summary:
            print(f"  {k:<15} {summary[k]:.4f}" + ("  (pixels)" if k == "hd95" else ""))
    if summary.get("hd95_undefined"):
        print(f"  hd95 undefined on {summary['hd95_undefined']} slice(s) (empty prediction or mask)")


# ----------------------------------------------------------------- commands
def cmd_train(args, demo=False):
    from . import data, metrics, plots
    from .model import UNet
    from .optim import Adam
    from .train import EarlyStopping, LearningRateScheduler, ModelCheckpoint, cosine_decay, fit, resume

    init = _init_model(args) if getattr(args, "init", None) else None
    if args.resume:                # an interrupted run continues with its own settings
        run = _checkpoint_state(args.resume).get("run", {})
        for key, value in run.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    _fill_defaults(args, finetune=init is not None)
    if args.size is not None and args.size % 2**args.depth:
        raise UsageError(f"--size {args.size} must be a multiple of 2**depth = {2 ** args.depth}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "cv", 0):
        return _cross_validate(args, init, out)
    start = time.time()
    train, val, test = _load_data(args, args.seed)
    _check_size(args, train[0])
    augment = data.augment_preset(args.augment)
    callbacks = [ModelCheckpoint(out), LearningRateScheduler(cosine_decay(args.lr, args.epochs))]
    if args.patience:
        callbacks.append(EarlyStopping(patience=args.patience))
    if args.resume:
        try:
            model, _, history = resume(args.resume, train, val, args.epochs, augment, callbacks,
                                       verbose=0 if args.quiet else 1)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from None
    else:
        model = init or UNet(in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
                             upsampling=args.upsampling, seed=args.seed)
        model.metadata = _metadata(train[0].shape[1:3], _label_map(args))
        print(f"UNet depth {args.depth}, base {args.base_filters}: {model.n_params:,} parameters"
              + (f" from {args.init}" if init else "") + f"; {args.epochs} epochs, batch {args.batch_size}, "
              f"lr {args.lr:g}, {args.augment} augmentation, {train[0].shape[1]}x{train[0].shape[2]} px, "
              f"backend {backend.name()}")
        run = {key: getattr(args, key) for key in ("size", "epochs", "lr", "augment")}    # what --resume reads back
        history = fit(model, Adam(model.params, args.lr), train, val, epochs=args.epochs, batch_size=args.batch_size,
                      loss=args.loss, augment=augment, callbacks=callbacks, seed=args.seed,
                      verbose=0 if args.quiet else 1, state={"epoch": 0, "batch": 0, "loss_sum": 0.0, "seen": 0, "run": run})
    if history.get("stopped") == "interrupted":
        print(f"interrupted: checkpoint saved to {out / 'last.h5'}; continue with --resume {out / 'last.h5'}")
        return 130
    best = out / "best.h5" if (out / "best.h5").exists() else out / "last.h5"
    model = _load_model(best)
    model.save(out / "model.h5")
    plots.curves(history, out / "curves.png")
    plots.architecture(model, train[0].shape[1], out / "architecture.png")
    elapsed = time.time() - start
    if test is not None and len(test[0]):
        preds = model.segment(test[0])
        summary = metrics.summarize(preds, test[1])
        plots.overlays(test[0], test[1], preds, out / "overlays.png")
        _report(summary, f"held-out test slices ({len(test[0])}):")
        (out / "metrics.json").write_text(json.dumps(summary, indent=1))
        if demo:
            print(f"demo: mean Dice {summary['dice']:.3f} on {len(test[0])} held-out phantom slices "
                  f"in {elapsed:.0f} s; wrote {out / 'model.h5'}, curves.png, overlays.png, architecture.png")
    print(f"done in {elapsed:.0f} s; model: {out / 'model.h5'}")
    return 0


def _checkpoint_state(path):
    from .model import load_checkpoint

    try:
        return load_checkpoint(path).state
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


def _check_size(args, images):
    h, w = images.shape[1:3]
    m = 2**args.depth
    if h % m or w % m:
        raise UsageError(f"{args.data}: slices are {h}x{w}, not multiples of 2**depth = {m}; "
                         f"pass --size with a multiple of {m}")


def _cross_validate(args, init, out):
    """train --cv K: K models, each trained on K-1 folds from the same start (the --init
    file, or the same seed) and scored on the fold it never saw."""
    from . import data, metrics
    from .model import UNet
    from .optim import Adam
    from .train import LearningRateScheduler, ModelCheckpoint, cosine_decay, fit

    if args.resume:
        raise UsageError("--cv trains K new models; it cannot --resume one run")
    if args.data in (None, "phantom"):
        raise UsageError("--cv needs --data PATH: cross-validation is for small real data sets")
    images, masks, names = data.load(args.data, size=args.size, label_map=_label_map(args), names=True)
    _check_size(args, images)
    try:
        folds = data.folds(len(images), args.cv, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"--cv {args.cv}: {e}") from None
    val = _load_val(args, images.shape[1:3]) if args.val_data else None
    augment = data.augment_preset(args.augment)
    print(f"{args.data}: {len(images)} slices of {images.shape[1]}x{images.shape[2]}, {args.cv}-fold cross-validation; "
          f"{args.epochs} epochs, lr {args.lr:g}, {args.augment} augmentation"
          + (f", each fold from {args.init}" if init else ""))
    results, start = [], time.time()
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        model = _load_model(args.init) if init else UNet(
            in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
            upsampling=args.upsampling, seed=args.seed)
        model.metadata = _metadata(images.shape[1:3], _label_map(args))
        folder = out / f"fold{k}"
        callbacks = [LearningRateScheduler(cosine_decay(args.lr, args.epochs))]
        if val is not None:
            callbacks.append(ModelCheckpoint(folder))
        history = fit(model, Adam(model.params, args.lr), (images[train_idx], masks[train_idx]), val,
                      epochs=args.epochs, batch_size=args.batch_size, loss=args.loss, augment=augment,
                      callbacks=callbacks, seed=args.seed, verbose=0 if args.quiet else 1)
        if history.get("stopped") == "interrupted":
            print(f"interrupted in fold {k}: no cross-validation result")
            return 130
        if val is not None and (folder / "best.h5").exists():
            model = _load_model(folder / "best.h5")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            model.save(folder / "model.h5")
        scores = metrics.per_image(model.segment(images[test_idx]), masks[test_idx])
        slices = [{"name": names[i], "dice": float(d), "iou": float(j), "hd95": _number(h)}
                  for i, d, j, h in zip(test_idx, scores["dice"][:, 0], scores["iou"][:, 0], scores["hd95"][:, 0])]
        fold_dice = float(scores["dice"].mean())
        results.append({"fold": k, "dice": fold_dice, "train": [names[i] for i in train_idx], "test": slices})
        print(f"fold {k}/{args.cv}: held-out Dice {fold_dice:.3f}  ("
              + ", ".join(f"{r['name']} {r['dice']:.3f}" for r in slices) + f")  [{time.time() - start:.0f} s]")
    dice = np.array([r["dice"] for r in results])
    summary = {"folds": args.cv, "seed": args.seed, "data": str(args.data), "init": args.init,
               "size": list(images.shape[1:3]), "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
               "loss": args.loss, "augment": args.augment, "dice_mean": float(dice.mean()),
               "dice_sd": float(dice.std(ddof=1)), "per_fold": results}
    (out / "cv.json").write_text(json.dumps(summary, indent=1))
    print(f"cross-validation, {args.cv} folds, seed {args.seed}: held-out Dice {dice.mean():.3f} +- "
          f"{dice.std(ddof=1):.3f} (mean +- sd over folds); wrote {out / 'cv.json'}")
    return 0


def _number(x):
    """A float for JSON, None for NaN (HD95 of an empty mask or prediction)."""
    return None if np.isnan(x) else float(x)


def cmd_evaluate(args):
    from . import data, metrics, plots

    model = _load_model(args.model)
    size = _inference_size(args, model, "evaluate")
    if args.data == "phantom":
        n_px = size[0] if size else 128
        images, masks = data.phantom.generate(args.n, size=n_px, seed=args.seed)
        names = [f"phantom_{i:04d}" for i in range(len(images))]
    else:
        label_map = _label_map(args) or _stored_label_map(model)
        images, masks, names = data.load(args.data, label_map=label_map, names=True)   # each at its own size
    preds = segment_at(model, images, size)
    summary = metrics.summarize(preds, masks)
    run_at = f"run at {size[0]}x{size[1]}, " if size else ""
    _report(summary, f"{args.data}: {len(images)} slices of {images.shape[1]}x{images.shape[2]} ({run_at}scored at their own size)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        scores = metrics.per_image(preds, masks)
        rows = [{"name": name, "dice": float(d), "iou": float(j), "hd95": _number(h)}
                for name, d, j, h in zip(names, scores["dice"][:, 0], scores["iou"][:, 0], scores["hd95"][:, 0])]
        (out / "per_slice.json").write_text(json.dumps(rows, indent=1))
        lines = ["name,dice,iou,hd95"] + [f"{r['name']},{r['dice']:.4f},{r['iou']:.4f},"
                                          f"{'' if r['hd95'] is None else format(r['hd95'], '.2f')}" for r in rows]
        (out / "per_slice.csv").write_text("\n".join(lines) + "\n")
        (out / "metrics.json").write_text(json.dumps(summary, indent=1))
        pages = plots.overlay_pages(images, masks, preds, [f"{r['name']}  Dice {r['dice']:.3f}" for r in rows],
                                    out / "overlays")
        print(f"wrote {out / 'per_slice.csv'}, per_slice.json, metrics.json and {len(pages)} overlay page(s) "
              f"{pages[0].name}{' ...' if len(pages) > 1 else ''}")
    return 0


def cmd_predict(args):
    from . import data, plots

    model = _load_model(args.model)
    size = _inference_size(args, model, "predict")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for p in map(Path, args.inputs):
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix in data.loaders.IMAGE_EXTENSIONS or data.loaders.is_volume(q))
        else:
            files.append(p)
    if not files:
        raise UsageError(f"no images (.png, .npy, .npz) or volumes (.nii, .nii.gz, .mha, .mhd) in {', '.join(args.inputs)}")
    import matplotlib.image

    for f in files:
        name = f.name.split(".")[0]
        if data.loaders.is_volume(f):
            x = data.loaders.load_volume_slices(f)
        else:
            x = data.normalize(data.loaders._check_image(data.loaders._read_2d(f, "image"), f)[None])[..., None]
        pred = segment_at(model, x, size)                          # (slices, H, W) at the input's size
        np.save(out / f"{name}_mask.npy", pred if len(pred) > 1 else pred[0])
        best = int(pred.reshape(len(pred), -1).sum(1).argmax())    # the slice with the most disc
        matplotlib.image.imsave(out / f"{name}_mask.png", pred[best] * 255, cmap="gray", vmin=0, vmax=255)
        plots.overlays(x[best : best + 1], None, pred[best : best + 1], out / f"{name}_overlay.png", n=1)
        print(f"{f}: {len(pred)} slice(s), {int(pred.sum())} disc pixels -> {out / (name + '_mask.npy')}")
    return 0


def cmd_summary(args):
    from .model import UNet

    if args.model:
        model = _load_model(args.model)
    else:
        model = UNet(in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
                     upsampling=args.upsampling, head=args.head)
    try:
        model.summary(args.size)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_gradcheck(args):
    from . import losses
    from .gradcheck import check_layer, check_loss, randomize_biases
    from .layers import Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, ReLU, Sigmoid, Softmax, UpSampling2D
    from .model import UNet

    rng = np.random.default_rng(args.seed)
    f64 = np.float64
    x = rng.standard_normal((2, 6, 6, 3))
    distinct = (rng.permutation(x.size).reshape(x.shape) * 0.01).astype(f64)        # no max-pool ties
    cases = [("Conv2D 3x3 same", Conv2D(3, 4, 3, dtype=f64, rng=0), x),
             ("Conv2D 3x3 same + ReLU", Conv2D(3, 4, 3, activation="relu", dtype=f64, rng=0), x),
             ("Conv2D 1x1 (head)", Conv2D(3, 2, 1, dtype=f64, rng=0), x),
             ("ConvTranspose2D 2x2/2", ConvTranspose2D(3, 4, 2, 2, dtype=f64, rng=0), x),
             ("MaxPool2D 2x2/2", MaxPool2D(2), distinct),
             ("UpSampling2D 2x", UpSampling2D(2), x),
             ("ReLU", ReLU(), x + 0.1 * np.sign(x)),
             ("Sigmoid", Sigmoid(), x), ("Softmax", Softmax(), x),
             ("Concatenate", Concatenate(), [x, x[..., :2]])]
    rows = []
    for name, layer, inp in cases:
        rows.append((name, check_layer(randomize_biases(layer, args.seed), inp, seed=args.seed).max_error))
    logits, labels = rng.standard_normal((2, 6, 6, 2)), rng.integers(0, 2, (2, 6, 6))
    for fn in (losses.softmax_cross_entropy, losses.dice_loss, losses.ce_dice_loss):
        rows.append((fn.__name__, check_loss(fn, logits, labels, seed=args.seed).max_error))
    rows.append(("sigmoid_cross_entropy", check_loss(losses.sigmoid_cross_entropy, logits[..., :1], labels).max_error))
    model = randomize_biases(UNet(1, 2, depth=2, base_filters=3, dtype=f64, seed=args.seed), args.seed)
    report = check_layer(model, rng.standard_normal((2, 16, 16, 1)), loss=losses.ce_dice_loss,
                         target=rng.integers(0, 2, (2, 16, 16)), seed=args.seed)
    rows.append((f"UNet depth 2 base 3 ({len(report.rows)} arrays)", report.max_error))
    print(f"gradient check, float64 central differences along random directions (pass: < {args.tol:g})")
    print(f"  {'layer / loss':<36} {'max rel. error':>14}  ok")
    for name, err in rows:
        print(f"  {name:<36} {err:>14.2e}  {'yes' if err < args.tol else 'NO'}")
    return 0 if all(err < args.tol for _, err in rows) else 1


def cmd_convert(args):
    from . import keras_h5

    model = _load_model(args.source)
    if keras_h5.is_keras_file(args.source):
        model.save(args.target)
        print(f"{args.source} (Keras) -> {args.target} (minunet), {model.n_params:,} parameters")
    else:
        keras_h5.save(model, args.target)
        print(f"{args.source} (minunet) -> {args.target} (Keras .h5, loads in Keras 3 and tf.keras)")
    return 0


def cmd_phantom(args):
    from . import data, plots

    t = time.time()
    images, masks = data.phantom.generate(args.n, size=args.size, seed=args.seed, labels=args.labels)
    elapsed = time.time() - t
    data.save_h5(args.out, images, masks, seed=args.seed, labels=args.labels, generator="minunet.data.phantom")
    print(f"wrote {args.n} phantom slices of {args.size}x{args.size} to {args.out} ({elapsed:.1f} s to generate)")
    if args.preview:
        plots.phantom_grid(images, masks, args.preview)
        print(f"wrote {args.preview}")
    return 0


# ------------------------------------------------------------------- parser
def _training_flags(p, defaults):
    p.add_argument("--data", default="phantom", help="a folder of image/mask pairs, an HDF5 file, or 'phantom' (default)")
    p.add_argument("--label-map", help="JSON mapping of mask labels to disc (1) / background (0), or 'spider'")
    p.add_argument("--init", help="start from this minunet or Keras model file's weights (fine-tuning: fresh optimizer, "
                   "schedule and epochs; the architecture comes from the file)")
    p.add_argument("--size", type=int, default=None, help=f"slice size in pixels (default {defaults['size']}; "
                   "with --init, the slices' own size)")
    p.add_argument("--n-train", type=int, default=defaults["n_train"], help="phantom training slices (default %(default)s)")
    p.add_argument("--n-val", type=int, default=defaults["n_val"], help="phantom validation slices (default %(default)s)")
    p.add_argument("--n-test", type=int, default=defaults["n_test"], help="phantom test slices (default %(default)s)")
    p.add_argument("--val-split", type=float, default=0.1, help="validation share of a --data set (default %(default)s)")
    p.add_argument("--test-split", type=float, default=0.1, help="test share of a --data set (default %(default)s)")
    p.add_argument("--val-data", help="validation slices from this folder or HDF5 file (instead of --val-split)")
    p.add_argument("--cv", type=int, default=0, metavar="K", help="K-fold cross-validation of --data: prints each fold's "
                   "held-out Dice and mean +- sd, writes cv.json (with --init, every fold starts from that file)")
    p.add_argument("--depth", type=int, default=None, help=f"encoder levels (default {defaults['depth']}; the seed: 5)")
    p.add_argument("--base-filters", type=int, default=None, help=f"filters of level 1 (default {defaults['base_filters']}; the seed: 64)")
    p.add_argument("--upsampling", choices=["transpose", "nearest"], default=None, help="default transpose")
    p.add_argument("--epochs", type=int, default=None, help=f"default {defaults['epochs']}; with --init {FINETUNE['epochs']}")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {defaults['batch_size']}; with --init {FINETUNE['batch_size']}")
    p.add_argument("--lr", type=float, default=None, help=f"Adam learning rate, cosine-decayed (default {defaults['lr']:g}; "
                   f"with --init {FINETUNE['lr']:g})")
    p.add_argument("--loss", choices=["ce", "dice", "ce+dice"], default=None, help=f"default {defaults['loss']}")
    p.add_argument("--augment", nargs="?", const="light", choices=["none", "light", "strong"], default=None,
                   help="augmentation preset (default none; with --init strong; --augment alone: light)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const="none", help="same as --augment none")
    p.add_argument("--patience", type=int, default=0, help="early stopping after this many epochs without a better validation Dice (0: off)")
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--resume", help="continue from a checkpoint (last.h5) written by an earlier run")
    p.add_argument("--out", default=defaults.get("out", "minunet-out"), help="output folder (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser():
    parser = argparse.ArgumentParser(prog="minunet", description="A U-Net for intervertebral-disc segmentation "
                                     "in spinal MRI, written from scratch in NumPy.")
    parser.add_argument("--version", action="version", version=f"minunet {__version__}")
    parser.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                        help="array backend (default: $MINUNET_BACKEND or numpy)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train a small U-Net on phantom slices and report the held-out Dice")
    _training_flags(p, {**DEMO, "out": "minunet-demo"})
    p.set_defaults(func=lambda a: cmd_train(a, demo=True))

    p = sub.add_parser("train", help="train a U-Net on a data set or the phantom")
    _training_flags(p, {**DEMO, "out": "minunet-out"})
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="Dice, IoU, precision, recall, pixel accuracy and HD95 of a model")
    p.add_argument("--model", required=True, help="a minunet or Keras .h5 model file")
    p.add_argument("--data", default="phantom", help="a folder, an HDF5 file, or 'phantom' (default)")
    p.add_argument("--label-map", help="JSON mapping of mask labels, or 'spider'")
    p.add_argument("--size", type=int, default=0, help="run the model at this size (default: the size it was trained at, "
                   "from the model file); masks are scored at the slices' own size")
    p.add_argument("--n", type=int, default=64, help="phantom slices (default %(default)s)")
    p.add_argument("--seed", type=int, default=12345, help="phantom seed (default %(default)s, unseen by the demo)")
    p.add_argument("--out", help="write per_slice.csv, per_slice.json, metrics.json and overlays_N.png here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="segment images (.png, .npy, .npz) or volumes (.nii, .mha) into disc masks and overlays")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=0, help="run the model at this size (default: the size it was trained "
                   "at, from the model file); masks come back at each input's own size")
    p.add_argument("--out", default="minunet-predictions")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("summary", help="layers, output shapes, parameters and multiply-adds")
    p.add_argument("model", nargs="?", help="a model file; without it, the configuration below")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--base-filters", type=int, default=64)
    p.add_argument("--upsampling", choices=["transpose", "nearest"], default="transpose")
    p.add_argument("--head", choices=["softmax", "sigmoid"], default="softmax")
    p.add_argument("--size", type=int, default=128, help="input size for the shapes (default %(default)s)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("gradcheck", help="check every layer's, loss's and a tiny U-Net's backward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("convert", help="a Keras .h5 model file to a minunet one, or the reverse")
    p.add_argument("source", help="a Keras .h5 or minunet .h5 model file")
    p.add_argument("target", help="the file to write, in the other format")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("phantom", help="write phantom slices to an HDF5 data set file")
    p.add_argument("--out", required=True, help="the .h5 file to write")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", choices=["disc", "multiclass"], default="disc")
    p.add_argument("--preview", help="also draw a grid of samples to this PNG")
    p.set_defaults(func=cmd_phantom)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import DataError

    try:
        if args.backend:
            backend.use(args.backend)
        return args.func(args)
    except (UsageError, DataError, RuntimeError, FileNotFoundError) as e:
        print(f"minunet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
