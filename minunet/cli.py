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
No command writes over an input, nor over an existing file unless given --overwrite;
every file is written through a temporary file and a rename.
"""
import argparse
import errno
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, backend

# The demo: small enough for a 2-core CPU in a few minutes, large enough to segment discs.
DEMO = dict(depth=4, base_filters=8, size=128, n_train=480, n_val=32, n_test=64, epochs=10,
            batch_size=8, lr=3e-3, loss="ce+dice", seed=0, upsampling="transpose", val_split=0.1, test_split=0.1)
PHANTOM_MIN_SIZE = 16   # minunet.data.phantom.generate's smallest slice
#: What evaluate writes into --out (more overlay pages, overlays_2.png ..., past 12 slices).
EVALUATE_OUTPUTS = ("metrics.json", "per_slice.csv", "per_slice.json", "overlays_1.png")
OVERLAYS_PER_PAGE = 12
#: What train and demo write into --out.
TRAIN_OUTPUTS = ("model.h5", "best.h5", "last.h5", "curves.png", "architecture.png", "overlays.png", "metrics.json")
#: What train --cv K writes into --out/foldK: the model scored, and with --val-data its checkpoints.
CV_FOLD_OUTPUTS = ("model.h5", "best.h5", "last.h5")


# Fine-tuning (train --init): the recipe that cross-validates best on the 12 real slices (Adam 2e-3,
# cosine decay over 200 epochs, batch 4, ce+dice, strong augmentation, at the slices' own 256 px).
# README "Fine-tuning on real slices" has its numbers and the settings it was chosen from.
FINETUNE = dict(size=None, epochs=200, batch_size=4, lr=2e-3, loss="ce+dice", augment="strong")

# How every data source normalizes a slice (minunet.data.normalize), recorded in model files.
NORMALIZATION = {"method": "percentile clip, then z-score per slice", "low": 0.5, "high": 99.5}


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


# ------------------------------------------------------- argument types
# Each checks one value where it is parsed; argparse turns the error into
# "argument --flag: <message>" on one line (see _Parser.error).
def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"received {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}")
    return value


def positive_int(text):
    """A whole number >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, received {text}")
    return value


def nonnegative_int(text):
    """A whole number >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, received {text}")
    return value


def positive_float(text):
    """A finite number > 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, received {text}")
    return value


def fraction(text):
    """A share of a data set: 0 <= x < 1."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 up to (not including) 1, received {text}")
    return value


# ---------------------------------------------------------- output files
def _same_file(a, b):
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs, inputs=(), overwrite=False):
    """Refuse, before anything is written, outputs that are inputs (always), that are
    folders, or that exist (unless ``overwrite``). ``outputs``: {path: what names it
    on the command line}, e.g. {"out/model.h5": "--out"}."""
    sources = {Path(i).resolve() for i in inputs}
    read = {f / sub for f in sources if f.is_dir() for sub in ("", "images", "masks")}   # where data.load looks
    for path, flag in outputs.items():
        path = Path(path)
        if path.resolve() in sources:
            raise UsageError(f"{flag} {path}: is an input of this command; write to another file")
        if path.resolve().parent in read:
            raise UsageError(f"{flag} {path}: is in the input folder {path.resolve().parent}, where it would be read "
                             f"as data next time; choose another {flag}")
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a folder; name a file")
        if path.exists() and not overwrite:
            raise UsageError(f"{flag} {path}: exists; pass --overwrite to replace it, or choose another {flag}")


def _out_folder(path, flag="--out"):
    """Create the output folder (and its parents); one line if it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create the folder ({e.strerror}); choose another {flag}") from None
    return path


def _write_json(path, value):
    _write_text(path, json.dumps(value, indent=1))


def _write_text(path, text):
    from .h5file import write_bytes_atomic

    write_bytes_atomic(path, text)


def _given(args, *names):
    """The flags among ``names`` that were given on the command line (their parser default is None)."""
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def _fill_defaults(args, defaults):
    for k, v in defaults.items():
        if getattr(args, k, v) is None:
            setattr(args, k, v)


# ------------------------------------------------------------------ helpers
def _phantom(n, size, seed, **kw):
    """Phantom slices; its size limit said in flags."""
    from . import data

    if size < PHANTOM_MIN_SIZE:
        raise UsageError(f"--size {size}: the phantom draws slices of {PHANTOM_MIN_SIZE} pixels or more; "
                         f"raise --size")
    return data.phantom.generate(n, size=size, seed=seed, **kw)


def _load_data(args, split_seed):
    """(train, val, test) arrays from --data or the phantom (and --val-data)."""
    from . import data

    if getattr(args, "data", None) in (None, "phantom"):
        size = args.size or 128
        n = args.n_train + args.n_val + args.n_test
        t = time.time()
        images, masks = _phantom(n, size, args.seed)
        print(f"phantom: {n} slices of {size}x{size} in {time.time() - t:.1f} s")
        a, b = args.n_train, args.n_train + args.n_val
        train, val, test = (images[:a], masks[:a]), (images[a:b], masks[a:b]), (images[b:], masks[b:])
        return train, (_load_val(args, images.shape[1:3]) if args.val_data else val), test
    images, masks = _load_labelled(args, args.size)
    n = len(images)
    val_share = 0.0 if args.val_data else args.val_split
    train, val, test = data.split(n, val=val_share, test=args.test_split, seed=split_seed)
    print(f"{args.data}: {n} slices -> {len(train)} train, {len(val)} validation, {len(test)} test")
    if len(train) == 0:
        raise UsageError(f"--data {args.data}: {n} slice(s) leave none to train on with --val-split {args.val_split} "
                         f"and --test-split {args.test_split}; lower them or add slices")
    for what, idx, flag, share in (("validation", val, "--val-split", val_share),
                                   ("test", test, "--test-split", args.test_split)):
        if share and len(idx) < 2:
            left = f"leaves 1 {what} slice, whose score says little" if len(idx) else f"leaves no {what} slice"
            print(f"minunet train: note: {flag} {share:g} of {n} slices {left}; use --cv K"
                  + (" or --val-data PATH" if what == "validation" else ""), file=sys.stderr)
    pick = lambda idx: (images[idx], masks[idx])  # noqa: E731
    val = _load_val(args, images.shape[1:3]) if args.val_data else (pick(val) if len(val) else None)
    return pick(train), val, (pick(test) if len(test) else None)


def _load_val(args, size):
    """The --val-data slices, resampled to the training slices' size."""
    images, masks = _load_labelled(args, tuple(size), args.val_data, "--val-data")
    print(f"{args.val_data}: {len(images)} validation slices")
    return images, masks


def _check_split_flags(args):
    """Refuse the split flags that --cv or --val-data would ignore."""
    if args.cv:
        ignored = _given(args, "val_split", "test_split") + (["--patience"] if args.patience else [])
        if ignored:
            raise UsageError(f"{ignored[0]} does not apply to --cv {args.cv}: each fold trains for --epochs epochs on "
                             f"the other folds and is scored on its own; drop {ignored[0]}")
    if args.val_data and _given(args, "val_split"):
        raise UsageError(f"--val-split does not apply with --val-data {args.val_data}, which is the validation set; "
                         f"drop --val-split")


def _check_data_flags(args, phantom_only, data_only):
    """Refuse flags that the chosen data would ignore (their parser default is None):
    ``phantom_only`` flags with --data PATH, ``data_only`` ones (and --label-map) with the phantom."""
    if args.data == "phantom":
        ignored = _given(args, "label_map", *data_only)
        why = " (its masks are already 1 = disc, 0 = background)" if ignored[:1] == ["--label-map"] else ""
        where = "--data PATH"
    else:
        ignored, why, where = _given(args, *phantom_only), "", None
    if ignored:
        target = where or "the phantom"
        other = f"--data {args.data}" if where is None else "the phantom"
        raise UsageError(f"{ignored[0]} applies to {target}, not to {other}{why}, so it would be ignored; drop {ignored[0]}")


def _load_labelled(args, size, path=None, flag="--data", names=False, label_map=None):
    """Images and masks (and, with ``names``, slice names) from --data PATH (or ``path``,
    given as ``flag``), with --label-map, refusing masks without any disc."""
    from . import data
    from .data.loaders import DataError, LabelMapError, NoDiscError, suggested_label_map

    path = path or args.data
    label_map = label_map or _label_map(args)
    try:
        loaded = data.load(path, size=size, label_map=label_map, names=names)
        images, masks = loaded[:2]
    except NoDiscError as e:
        full = json.dumps({str(k): v for k, v in suggested_label_map(e.labels, {0: 0, 1: 1}).items()})
        discs = ", ".join(map(str, e.discs[:3])) + (", ..." if len(e.discs) > 3 else "")
        given = f"--label-map {args.label_map!r}" if args.label_map else "the label map recorded in the model file"
        raise UsageError(f"{flag} {path}: {given} marks labels [{discs}] as disc, but the "
                         f"masks hold only {e.labels}: no disc at all; pass a --label-map that names these labels, "
                         f"e.g. --label-map '{full}'") from None
    except LabelMapError as e:
        full = json.dumps({str(k): v for k, v in suggested_label_map(e.labels, e.label_map).items()})
        given = f"--label-map {args.label_map!r}" if args.label_map else "the default labels (0 background, 1 disc)"
        raise UsageError(f"{e.where}: mask labels {e.uncovered[:8]} are not in {given}; pass every label, "
                         f"e.g. --label-map '{full}' (1 = disc, 0 = background), or add \"rest\": 0") from None
    except DataError as e:
        if str(e).startswith(f"{path}:"):          # about the path itself: say which flag gave it
            raise UsageError(f"{flag} {e}") from None
        raise
    if not masks.any():
        how = f" after --label-map {args.label_map!r}" if args.label_map else ""
        raise UsageError(f"{flag} {path}: no mask marks any disc pixel{how} ({len(masks)} masks, all 0); "
                         f"Dice would be meaningless: check the masks" + ("" if args.label_map else " or pass --label-map"))
    return loaded


def _label_map(args):
    spec = getattr(args, "label_map", None)
    if not spec:
        return None
    from .data import SPIDER_DISCS

    if spec == "spider":
        return {**SPIDER_DISCS, "rest": 0}
    example = '--label-map \'{"0": 0, "1": 1, "2": 0}\' (every mask label: 1 = disc, 0 = background), or \'spider\''
    try:
        raw = json.loads(spec)
    except ValueError:
        raise UsageError(f"--label-map {spec!r}: not valid JSON; give e.g. {example}") from None
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"--label-map {spec!r}: give a JSON object, e.g. {example}")
    out = {}
    for k, v in raw.items():
        if k != "rest" and not k.lstrip("-").isdigit():
            raise UsageError(f"--label-map {spec!r}: key {k!r} is not a whole-number label (or \"rest\"); e.g. {example}")
        if v not in (0, 1) or isinstance(v, bool):
            raise UsageError(f"--label-map {spec!r}: label {k} maps to {json.dumps(v)}; map every label to 1 (disc) "
                             f"or 0 (background)")
        label = k if k == "rest" else int(k)
        if label in out:
            raise UsageError(f"--label-map {spec!r}: label {label} is given twice; give each label once")
        out[label] = int(v)
    return out


def _load_model(path, flag=None):
    """A UNet from a minunet or a Keras .h5 file; errors as one line, led by the ``flag``
    that named the file (none for a positional argument)."""
    from . import load

    try:
        return load(path)
    except (FileNotFoundError, ValueError) as e:
        message = str(e).replace("use keras_h5.load_weights(UNet(...), path) with the matching configuration",
                                 "save the whole model from Keras (model.save('m.h5')), not only its weights")
        raise UsageError(f"{flag} {message}" if flag else message) from None


def _metadata(size, label_map):
    """What a model file records about its input (UNet.metadata)."""
    label_map = label_map or {0: 0, 1: 1}
    return {"size": [int(size[0]), int(size[1])], "normalization": NORMALIZATION,
            "label_map": {str(k): int(v) for k, v in label_map.items()}}


def _stored_label_map(model):
    """The label map a model was trained with, from its file (None if not recorded, or
    if it is the default 0/1)."""
    stored = (model.metadata or {}).get("label_map")
    stored = {(k if k == "rest" else int(k)): int(v) for k, v in stored.items()} if stored else None
    return None if stored == {0: 0, 1: 1} else stored


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
    model = _load_model(args.init, "--init")
    for flag, key in (("--depth", "depth"), ("--base-filters", "base_filters"), ("--upsampling", "upsampling")):
        given = getattr(args, key)
        if given is not None and given != model.config[key]:
            raise UsageError(f"{flag} {given} contradicts {args.init}, whose {key.replace('_', ' ')} is "
                             f"{model.config[key]}; drop {flag} (--init takes the architecture from the file)")
    for key in ("depth", "base_filters", "upsampling"):
        setattr(args, key, model.config[key])
    return model


def _train_defaults(finetune):
    """What a flag left unset means for train and demo: the demo's settings, or the
    fine-tuning recipe's under --init."""
    return {**DEMO, "augment": "none", **(FINETUNE if finetune else {})}


def _report(summary, title):
    print(title)
    for k in ("dice", "iou", "precision", "recall", "pixel_accuracy", "hd95"):
        if k in summary:
            print(f"  {k:<15} {summary[k]:.4f}" + ("  (pixels)" if k == "hd95" else ""))
    if summary.get("hd95_undefined"):
        print(f"  hd95 undefined on {summary['hd95_undefined']} slice(s) (empty prediction or mask)")


# ----------------------------------------------------------------- commands
def _check_resume_flags(args):
    """With --resume the network, batch size, loss and seed come from the checkpoint:
    repeating them is fine, a different value would be ignored, so it is refused."""
    from .h5file import open_read

    try:
        with open_read(args.resume) as f:
            config = json.loads(f.attrs.get("config", "{}"))
            state = json.loads(f.attrs.get("state", "{}"))
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--resume {e}") from None
    saved = {**config, **state}
    for name in ("depth", "base_filters", "upsampling", "batch_size", "loss", "seed"):
        value = getattr(args, name)
        if value is not None and name in saved and saved[name] != value:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: the checkpoint {args.resume} was trained with {flag} {saved[name]}, "
                             f"and --resume continues it as it was; drop {flag}")


def _threads_text(args):
    n = getattr(args, "blas_threads", None)
    return f"{n} BLAS thread{'s' if n != 1 else ''}" if n else "BLAS threads as $OMP_NUM_THREADS sets"


def cmd_train(args, demo=False):
    from . import data, metrics, plots
    from .model import UNet
    from .optim import Adam
    from .train import (DivergedError, EarlyStopping, LearningRateScheduler, ModelCheckpoint, cosine_decay, fit,
                        resume)

    _check_data_flags(args, ("n_train", "n_val", "n_test"), ("val_split", "test_split"))
    _check_split_flags(args)
    init = _init_model(args) if args.init else None
    if args.resume:                # an interrupted run continues with its own settings
        _check_resume_flags(args)
        for key, value in _checkpoint_state(args.resume).get("run", {}).items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    _fill_defaults(args, _train_defaults(finetune=init is not None))
    if args.data != "phantom" and args.val_split + args.test_split >= 1:
        raise UsageError(f"--val-split {args.val_split} and --test-split {args.test_split} add up to 1 or more, "
                         f"leaving nothing to train on; lower them")
    if not args.resume and args.size is not None:
        _check_size_flag(args)
    out = _out_folder(args.out)
    if args.cv:
        return _cross_validate(args, init, out)
    resuming_here = bool(args.resume) and _same_file(Path(args.resume).parent, out)
    earlier = [name for name in TRAIN_OUTPUTS if (out / name).exists()]
    if earlier and not resuming_here and not args.overwrite:   # a run's files must all come from that run
        raise UsageError(f"--out {out}: holds {', '.join(earlier)} from an earlier run; pass --overwrite to replace "
                         f"them, choose another --out, or continue that run with --resume {out / 'last.h5'}")
    inputs = [p for p in (args.data, args.val_data, args.init) if p]
    check_outputs({out / name: "--out" for name in TRAIN_OUTPUTS}, inputs=inputs, overwrite=True)
    start = time.time()
    train, val, test = _load_data(args, args.seed)
    _check_size(args, train[0])
    augment = data.augment_preset(args.augment)
    checkpoint = ModelCheckpoint(out)
    callbacks = [checkpoint, LearningRateScheduler(cosine_decay(args.lr, args.epochs))]
    if args.patience:
        callbacks.append(EarlyStopping(patience=args.patience))
    try:
        if args.resume:
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    model, _, history = resume(args.resume, train, val, args.epochs, augment, callbacks,
                                               verbose=0 if args.quiet else 1)
            except (FileNotFoundError, ValueError) as e:
                raise UsageError(str(e).replace("resume from a last.h5 or best.h5 written by fit",
                                                "pass --resume a last.h5 or best.h5 written by minunet train")) from None
        else:
            model = init or UNet(in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
                                 upsampling=args.upsampling, seed=args.seed)
            model.metadata = _metadata(train[0].shape[1:3], _label_map(args))
            print(f"UNet depth {args.depth}, base {args.base_filters}: {model.n_params:,} parameters"
                  + (f" from {args.init}" if init else "") + f"; {args.epochs} epochs, batch {args.batch_size}, "
                  f"lr {args.lr:g}, {args.augment} augmentation, {train[0].shape[1]}x{train[0].shape[2]} px, "
                  f"backend {backend.name()}, {_threads_text(args)}")
            run = {key: getattr(args, key) for key in ("size", "epochs", "lr", "augment")}    # what --resume reads back
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # a diverging run is reported below
                history = fit(model, Adam(model.params, args.lr), train, val, epochs=args.epochs,
                              batch_size=args.batch_size, loss=args.loss, augment=augment, callbacks=callbacks,
                              seed=args.seed, verbose=0 if args.quiet else 1,
                              state={"epoch": 0, "batch": 0, "loss_sum": 0.0, "seen": 0, "run": run})
    except DivergedError as e:
        done, lower = e.epoch - 1, _lower_lr(args)
        kept = (f"the last good checkpoint, {out / 'last.h5'} (after epoch {done}), is kept: continue with "
                f"--resume {out / 'last.h5'} --lr {lower}" if done >= 1 and (out / "last.h5").exists()
                else "no checkpoint was written")
        raise UsageError(f"training diverged: the loss became {e.value} at epoch {e.epoch}, batch {e.batch} "
                         f"(learning rate {e.lr:g} from --lr {args.lr:g}); lower --lr, e.g. --lr {lower}; "
                         f"{kept}") from None
    if history.get("stopped") == "interrupted":
        print(f"interrupted: checkpoint saved to {out / 'last.h5'}; continue with --resume {out / 'last.h5'}")
        return 130
    written = {"last.h5", "model.h5", "curves.png", "architecture.png"}
    if checkpoint.wrote_best or (resuming_here and checkpoint.best is not None and (out / "best.h5").exists()):
        written.add("best.h5")           # written by this run, or by the part of it that --resume continues
    model = _load_model(out / ("best.h5" if "best.h5" in written else "last.h5"))
    model.save(out / "model.h5")
    plots.curves(history, out / "curves.png")
    plots.architecture(model, train[0].shape[1], out / "architecture.png")
    elapsed = time.time() - start
    if test is not None and len(test[0]):
        preds = model.segment(test[0])
        summary = metrics.summarize(preds, test[1])
        plots.overlays(test[0], test[1], preds, out / "overlays.png")
        _report(summary, f"held-out test slices ({len(test[0])}):")
        _write_json(out / "metrics.json", summary)
        written |= {"overlays.png", "metrics.json"}
    stale = [name for name in TRAIN_OUTPUTS if name not in written and (out / name).exists()]
    for name in stale:         # left by an earlier run (replaced with --overwrite): not this run's
        (out / name).unlink()
    if stale:
        print(f"removed {', '.join(stale)} left in {out} by an earlier run (this run wrote none)")
    files = ", ".join(name for name in TRAIN_OUTPUTS if name in written)
    if demo and "metrics.json" in written:
        print(f"demo: mean Dice {summary['dice']:.3f} on {len(test[0])} held-out phantom slices "
              f"in {elapsed:.0f} s; wrote {files} in {out}")
    why = "no validation set" if val is None else "no better validation Dice in this run"
    print(f"done in {elapsed:.0f} s; model: {out / 'model.h5'}"
          + ("" if "best.h5" in written else f" (the last epoch's weights: {why})"))
    return 0


def _lower_lr(args):
    """The --lr to suggest after a diverged run: a tenth of it, at most the demo's rate."""
    return f"{min(args.lr / 10, DEMO['lr']):g}"


def _checkpoint_state(path):
    from .model import load_checkpoint

    try:
        return load_checkpoint(path).state
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None


def _check_size_flag(args):
    if args.size % 2**args.depth:
        raise UsageError(f"--size {args.size} must be a multiple of 2**depth = 2**{args.depth} = {2 ** args.depth}; "
                         f"change --size or --depth")


def _check_size(args, images):
    """Slices loaded at their own size must fit the network's 2**depth rule too."""
    h, w = images.shape[1:3]
    m = 2**args.depth
    if h % m or w % m:
        raise UsageError(f"--data {args.data}: slices are {h}x{w}, not multiples of 2**depth = {m}; "
                         f"pass --size with a multiple of {m}")


def _cross_validate(args, init, out):
    """train --cv K: K models, each trained on K-1 folds from the same start (the --init
    file, or the same seed) and scored on the fold it never saw."""
    from . import data
    from .model import UNet
    from .optim import Adam
    from .train import DivergedError, LearningRateScheduler, ModelCheckpoint, cosine_decay, fit

    if args.resume:
        raise UsageError("--cv trains K new models; it cannot --resume one run")
    if args.data in (None, "phantom"):
        raise UsageError("--cv needs --data PATH: cross-validation is for small real data sets")
    images, masks, names = _load_labelled(args, args.size, names=True)
    _check_size(args, images)
    try:
        folds = data.folds(len(images), args.cv, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"--cv {args.cv}: {e}") from None
    val = _load_val(args, images.shape[1:3]) if args.val_data else None
    fold_files = CV_FOLD_OUTPUTS if val is not None else CV_FOLD_OUTPUTS[:1]
    earlier = {p for p in out.glob("fold*/*.h5") if p.parent.name[4:].isdigit() and p.name in CV_FOLD_OUTPUTS}
    check_outputs({out / "cv.json": "--out", **{out / f"fold{k}" / name: "--out" for k in range(1, args.cv + 1)
                                                for name in fold_files}},
                  inputs=[p for p in (args.data, args.val_data, args.init) if p], overwrite=args.overwrite)
    augment = data.augment_preset(args.augment)
    print(f"{args.data}: {len(images)} slices of {images.shape[1]}x{images.shape[2]}, {args.cv}-fold cross-validation; "
          f"{args.epochs} epochs, lr {args.lr:g}, {args.augment} augmentation"
          + (f", each fold from {args.init}" if init else ""))
    results, written, start = [], set(), time.time()
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        model = _load_model(args.init, "--init") if init else UNet(
            in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
            upsampling=args.upsampling, seed=args.seed)
        model.metadata = _metadata(images.shape[1:3], _label_map(args))
        folder = out / f"fold{k}"
        checkpoint = ModelCheckpoint(folder) if val is not None else None
        callbacks = [LearningRateScheduler(cosine_decay(args.lr, args.epochs))] + ([checkpoint] if checkpoint else [])
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # a diverging fold is reported
                history = fit(model, Adam(model.params, args.lr), (images[train_idx], masks[train_idx]), val,
                              epochs=args.epochs, batch_size=args.batch_size, loss=args.loss, augment=augment,
                              callbacks=callbacks, seed=args.seed, verbose=0 if args.quiet else 1)
        except DivergedError as e:
            raise UsageError(f"fold {k} diverged: the loss became {e.value} at epoch {e.epoch} (--lr {args.lr:g}); "
                             f"lower --lr, e.g. --lr {_lower_lr(args)}") from None
        if history.get("stopped") == "interrupted":
            print(f"interrupted in fold {k}: no cross-validation result")
            return 130
        if checkpoint is not None:
            written.add(folder / "last.h5")
            if checkpoint.wrote_best:                  # the best validation Dice of this fold's run
                written.add(folder / "best.h5")
                model = _load_model(folder / "best.h5")
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / "model.h5")
        written.add(folder / "model.h5")
        slices = _per_slice([names[i] for i in test_idx], model.segment(images[test_idx]), masks[test_idx])
        fold_dice = float(np.mean([r["dice"] for r in slices]))
        results.append({"fold": k, "dice": fold_dice, "train": [names[i] for i in train_idx], "test": slices})
        print(f"fold {k}/{args.cv}: held-out Dice {fold_dice:.3f}  ("
              + ", ".join(f"{r['name']} {r['dice']:.3f}" for r in slices) + f")  [{time.time() - start:.0f} s]")
    dice = np.array([r["dice"] for r in results])
    summary = {"folds": args.cv, "seed": args.seed, "data": str(args.data), "init": args.init,
               "size": list(images.shape[1:3]), "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
               "loss": args.loss, "augment": args.augment, "dice_mean": float(dice.mean()),
               "dice_sd": float(dice.std(ddof=1)), "per_fold": results}
    _write_json(out / "cv.json", summary)
    stale = sorted(earlier - written)
    for path in stale:                   # left by an earlier run (replaced with --overwrite): not this run's
        path.unlink()
    if stale:
        print(f"removed {', '.join(str(p.relative_to(out)) for p in stale)} left in {out} by an earlier run")
    print(f"cross-validation, {args.cv} folds, seed {args.seed}: held-out Dice {dice.mean():.3f} +- "
          f"{dice.std(ddof=1):.3f} (mean +- sd over folds); wrote {out / 'cv.json'}")
    return 0


def _per_slice(names, preds, masks):
    """One row a slice: its name, Dice, IoU and HD95 (None where undefined), as cv.json and
    evaluate's per_slice files hold them."""
    from . import metrics

    scores = metrics.per_image(preds, masks)
    return [{"name": name, "dice": float(d), "iou": float(j), "hd95": _json_number(h)}
            for name, d, j, h in zip(names, scores["dice"][:, 0], scores["iou"][:, 0], scores["hd95"][:, 0])]


def _json_number(x):
    """A float for JSON, None for NaN (HD95 of an empty mask or prediction)."""
    return None if np.isnan(x) else float(x)


def cmd_evaluate(args):
    from . import metrics, plots

    _check_data_flags(args, ("n", "seed"), ())
    _fill_defaults(args, {"n": 64, "seed": 12345})
    if args.out:
        out = Path(args.out)
        check_outputs({out / name: "--out" for name in EVALUATE_OUTPUTS}, inputs=[args.model, args.data],
                      overwrite=args.overwrite)
    model = _load_model(args.model, "--model")
    size = _inference_size(args, model, "evaluate")
    if args.data == "phantom":
        images, masks = _phantom(args.n, size[0] if size else 128, args.seed)
        names = [f"phantom_{i:04d}" for i in range(len(images))]
    else:                                                      # each slice at its own size
        images, masks, names = _load_labelled(args, None, names=True,
                                              label_map=_label_map(args) or _stored_label_map(model))
    if args.out:                                               # the pages past the first, now that N is known
        pages = [out / f"overlays_{k}.png" for k in range(1, -(-len(images) // OVERLAYS_PER_PAGE) + 1)]
        check_outputs({page: "--out" for page in pages}, overwrite=args.overwrite)
    preds = segment_at(model, images, size)
    summary = metrics.summarize(preds, masks)
    run_at = f"run at {size[0]}x{size[1]}, " if size else ""
    _report(summary, f"{args.data}: {len(images)} slices of {images.shape[1]}x{images.shape[2]} ({run_at}scored at their own size)")
    if args.out:
        out = _out_folder(args.out)
        rows = _per_slice(names, preds, masks)
        _write_json(out / "per_slice.json", rows)
        lines = ["name,dice,iou,hd95"] + [f"{r['name']},{r['dice']:.4f},{r['iou']:.4f},"
                                          f"{'' if r['hd95'] is None else format(r['hd95'], '.2f')}" for r in rows]
        _write_text(out / "per_slice.csv", "\n".join(lines) + "\n")
        _write_json(out / "metrics.json", summary)
        plots.overlay_pages(images, masks, preds, [f"{r['name']}  Dice {r['dice']:.3f}" for r in rows],
                            out / "overlays", per_page=OVERLAYS_PER_PAGE)
        print(f"wrote {out / 'per_slice.csv'}, per_slice.json, metrics.json and {len(pages)} overlay page(s) "
              f"{pages[0].name}{' ...' if len(pages) > 1 else ''}")
        stale = [p for p in out.glob("overlays_*.png") if p not in pages and p.stem.split("_")[1].isdigit()]
        for p in stale:                  # pages of an earlier, longer evaluate (replaced with --overwrite)
            p.unlink()
        if stale:
            print(f"removed {len(stale)} overlay page(s) left in {out} by an earlier evaluate")
    return 0


def _predict_inputs(paths):
    """(image files to segment, mask files skipped, every input file) from files and folders.
    A folder's files that the loader reads as masks (NAME_mask.*, masks/) are skipped."""
    from .data import loaders

    readable = lambda q: q.is_file() and (q.suffix in loaders.IMAGE_EXTENSIONS or loaders.is_volume(q))  # noqa: E731
    files, skipped, inputs = [], [], []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
        if p.is_dir():
            folder = p / "images" if (p / "images").is_dir() else p
            found = sorted(q for q in folder.iterdir() if readable(q))
            inputs += [q for q in p.rglob("*") if q.is_file()]
            skipped += [q for q in found if loaders.is_mask_file(q)]
            files += [q for q in found if not loaders.is_mask_file(q)]
        else:
            if not readable(p):
                raise UsageError(f"{p}: predict reads {', '.join(loaders.IMAGE_EXTENSIONS)} slices and "
                                 f"{', '.join(loaders.VOLUME_EXTENSIONS)} volumes, not {p.suffix or 'this file'}; "
                                 f"convert it (e.g. to a grayscale .png)")
            files.append(p)
            inputs.append(p)
    return files, skipped, inputs


def _write_mask_png(path, mask):
    """A single-channel 8-bit PNG holding the labels 0 / 1, as minunet.data.load reads masks."""
    from PIL import Image

    from .h5file import replace_atomic

    replace_atomic(path, lambda tmp: Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L").save(tmp, format="PNG"))


def _save_npy(path, array):
    from .h5file import replace_atomic

    replace_atomic(path, lambda tmp: np.save(tmp, array))


def cmd_predict(args):
    from . import data, plots
    from .data import loaders

    files, skipped, inputs = _predict_inputs(args.inputs)
    if not files:
        also = f" (skipped {len(skipped)} mask file(s) NAME_mask.*)" if skipped else ""
        raise UsageError(f"no images (.png, .npy, .npz) or volumes (.nii, .nii.gz, .mha, .mhd) in "
                         f"{', '.join(args.inputs)}{also}")
    out = Path(args.out)
    planned, source = {}, {}
    for f in files:
        stem = loaders.stem(f)
        for suffix in ("_mask.npy", "_mask.png", "_overlay.png"):
            target = out / f"{stem}{suffix}"
            if target in source:
                raise UsageError(f"{source[target]} and {f} would both write {target}; predict them into "
                                 f"different --out folders")
            source[target] = f
            planned[target] = "--out"
    check_outputs(planned, inputs=inputs + [args.model], overwrite=args.overwrite)
    model = _load_model(args.model, "--model")
    size = _inference_size(args, model, "predict")
    out = _out_folder(out)
    if skipped:
        print(f"skipped {len(skipped)} mask file(s): {', '.join(q.name for q in skipped[:3])}"
              + (", ..." if len(skipped) > 3 else ""))
    for f in files:
        stem = loaders.stem(f)
        if data.loaders.is_volume(f):
            x = data.loaders.load_volume_slices(f)
        else:
            x = data.normalize(data.loaders._check_image(data.loaders._read_2d(f, "image"), f)[None])[..., None]
        pred = segment_at(model, x, size)                          # (slices, H, W) at the input's size
        _save_npy(out / f"{stem}_mask.npy", pred if len(pred) > 1 else pred[0])
        best = int(pred.reshape(len(pred), -1).sum(1).argmax())    # the slice with the most disc
        _write_mask_png(out / f"{stem}_mask.png", pred[best])
        plots.overlays(x[best : best + 1], None, pred[best : best + 1], out / f"{stem}_overlay.png", n=1)
        print(f"{f}: {len(pred)} slice(s), {int(pred.sum())} disc pixels -> {out / (stem + '_mask.npy')}")
    return 0


def cmd_summary(args):
    from .model import UNet

    if args.model:
        ignored = _given(args, "depth", "base_filters", "upsampling", "head")
        if ignored:
            raise UsageError(f"{ignored[0]}: the model file {args.model} fixes the network; drop {ignored[0]}")
        model = _load_model(args.model)
    else:
        _fill_defaults(args, {"depth": DEMO["depth"], "base_filters": DEMO["base_filters"],
                              "upsampling": DEMO["upsampling"], "head": "softmax"})
        _check_size_flag(args)
        model = UNet(in_channels=1, n_classes=2, depth=args.depth, base_filters=args.base_filters,
                     upsampling=args.upsampling, head=args.head)
    try:
        model.summary(args.size)
    except ValueError as e:
        raise UsageError(str(e).replace("H and W", "--size").replace("(N, H, W", "(N, --size, --size")) from None
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

    check_outputs({args.target: "TARGET"}, inputs=[args.source], overwrite=args.overwrite)
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

    if args.preview and _same_file(args.preview, args.out):
        raise UsageError(f"--preview {args.preview} and --out {args.out} name the same file; give two names")
    check_outputs({args.out: "--out", **({args.preview: "--preview"} if args.preview else {})}, overwrite=args.overwrite)
    t = time.time()
    images, masks = _phantom(args.n, args.size, args.seed, labels=args.labels)
    elapsed = time.time() - t
    data.save_h5(args.out, images, masks, seed=args.seed, labels=args.labels, generator="minunet.data.phantom")
    print(f"wrote {args.n} phantom slices of {args.size}x{args.size} to {args.out} ({elapsed:.1f} s to generate)")
    if args.preview:
        plots.phantom_grid(images, masks, args.preview)
        print(f"wrote {args.preview}")
    return 0


# ------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: 'minunet train: error: argument --lr: ...'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to every flag's help that does not state its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.required or action.default is None
                or action.default is argparse.SUPPRESS or action.nargs == 0):
            return text
        return text + " (default: %(default)s)"


def _global_flags(p, default):
    """--backend and --threads, accepted before and after the command."""
    p.add_argument("--backend", choices=["numpy", "cupy"], default=default,
                   help="array backend (default: $MINUNET_BACKEND, else numpy)")
    p.add_argument("--threads", type=positive_int, default=default, metavar="N",
                   help="BLAS threads for the matrix products (default: the CPUs not already busy, "
                        "from the load average; $OMP_NUM_THREADS when set)")


def _training_flags(p, defaults):
    d = defaults
    p.add_argument("--data", default="phantom", help="a folder of image/mask pairs, an HDF5 file, or 'phantom' (default)")
    p.add_argument("--label-map", help="--data only: JSON mapping of every mask label to 1 (disc) or 0 (background), "
                   "e.g. '{\"0\": 0, \"1\": 1, \"2\": 0}', or 'spider' (default: masks hold 0/1)")
    p.add_argument("--init", help="start from this minunet or Keras model file's weights: fine-tuning, with a fresh "
                   "optimizer, schedule and epochs; the architecture comes from the file (default: a new network)")
    p.add_argument("--size", type=positive_int, help=f"slice size in pixels, a multiple of 2**depth (default "
                   f"{d['size']}; with --init, the slices' own size)")
    p.add_argument("--n-train", type=positive_int, help=f"phantom only: training slices (default {d['n_train']})")
    p.add_argument("--n-val", type=positive_int, help=f"phantom only: validation slices (default {d['n_val']})")
    p.add_argument("--n-test", type=positive_int, help=f"phantom only: test slices (default {d['n_test']})")
    p.add_argument("--val-split", type=fraction, help=f"--data only: validation share (default {d['val_split']})")
    p.add_argument("--test-split", type=fraction, help=f"--data only: test share (default {d['test_split']})")
    p.add_argument("--val-data", help="validation slices from this folder or HDF5 file, instead of --val-split "
                   "(default: none)")
    p.add_argument("--cv", type=positive_int, metavar="K", help="K-fold cross-validation of --data: each fold's "
                   "held-out Dice and their mean +- sd, written to cv.json; with --init every fold starts from that "
                   "file (default: off)")
    p.add_argument("--depth", type=positive_int, help=f"encoder levels (default {d['depth']}; the seed: 5)")
    p.add_argument("--base-filters", type=positive_int, help=f"filters of level 1 (default {d['base_filters']}; the seed: 64)")
    p.add_argument("--upsampling", choices=["transpose", "nearest"], help=f"up-sampling (default {d['upsampling']})")
    p.add_argument("--epochs", type=positive_int, help=f"epochs to train (to reach, with --resume) (default "
                   f"{d['epochs']}; with --init {FINETUNE['epochs']})")
    p.add_argument("--batch-size", type=positive_int, help=f"slices per step (default {d['batch_size']}; "
                   f"with --init {FINETUNE['batch_size']})")
    p.add_argument("--lr", type=positive_float, help=f"Adam learning rate, cosine-decayed (default {d['lr']:g}; "
                   f"with --init {FINETUNE['lr']:g})")
    p.add_argument("--loss", choices=["ce", "dice", "ce+dice"], help=f"training loss (default {d['loss']})")
    p.add_argument("--augment", nargs="?", const="light", choices=["none", "light", "strong"],
                   help="augmentation level: light = flips, small rotations and zooms, intensity jitter; strong adds "
                   "elastic deformation, bias field, gamma, blur and noise (default none; with --init strong; "
                   "--augment alone: light)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const="none", help="same as --augment none (default: not given)")
    p.add_argument("--patience", type=nonnegative_int, default=0,
                   help="early stopping after this many epochs without a better validation Dice (0: off)")
    p.add_argument("--seed", type=nonnegative_int, help=f"weights, phantom, split and batches (default {d['seed']})")
    p.add_argument("--resume", help="continue from a checkpoint (last.h5) written by an earlier run (default: start anew)")
    p.add_argument("--out", default=d["out"], help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the model files of an earlier run in --out (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: show them)")


def build_parser():
    kw = dict(formatter_class=_HelpFormatter)
    parser = _Parser(prog="minunet", description="A U-Net for intervertebral-disc segmentation "
                     "in spinal MRI, written from scratch in NumPy.", **kw)
    parser.add_argument("--version", action="version", version=f"minunet {__version__}")
    _global_flags(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, argparse.SUPPRESS)          # after the command; SUPPRESS keeps a value given before it
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help):
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common], **kw)

    p = command("demo", "train a small U-Net on phantom slices and report the held-out Dice")
    _training_flags(p, {**DEMO, "out": "minunet-demo"})
    p.set_defaults(func=lambda a: cmd_train(a, demo=True))

    p = command("train", "train a U-Net on a data set or the phantom")
    _training_flags(p, {**DEMO, "out": "minunet-out"})
    p.set_defaults(func=cmd_train)

    p = command("evaluate", "Dice, IoU, precision, recall, pixel accuracy and HD95 of a model")
    p.add_argument("--model", required=True, help="a minunet or Keras .h5 model file")
    p.add_argument("--data", default="phantom", help="a folder, an HDF5 file, or 'phantom' (default)")
    p.add_argument("--label-map", help="--data only: JSON mapping of every mask label to 1 (disc) or 0, or 'spider' "
                   "(default: the map recorded in the model file, else masks hold 0/1)")
    p.add_argument("--size", type=positive_int, help="run the model at this size (default: the size it was trained "
                   "at, from the model file; phantom: 128); masks are scored at the slices' own size")
    p.add_argument("--n", type=positive_int, help="phantom only: slices (default 64)")
    p.add_argument("--seed", type=nonnegative_int, help="phantom only: seed (default 12345, unseen by the demo)")
    p.add_argument("--out", help="write per_slice.csv, per_slice.json, metrics.json and overlays_N.png (every slice, "
                   "named, with its Dice) into this folder (default: write nothing)")
    p.add_argument("--overwrite", action="store_true", help="replace those files in --out (default: refuse)")
    p.set_defaults(func=cmd_evaluate)

    p = command("predict", "segment images (.png, .npy, .npz) or volumes (.nii, .mha) into disc masks and overlays")
    p.add_argument("inputs", nargs="+", help="image files or folders (a folder's NAME_mask.* files are skipped)")
    p.add_argument("--model", required=True, help="a minunet or Keras .h5 model file")
    p.add_argument("--size", type=positive_int, help="run the model at this size (default: the size it was trained "
                   "at, from the model file); masks come back at each input's own size")
    p.add_argument("--out", default="minunet-predictions",
                   help="folder for NAME_mask.npy, NAME_mask.png (0/1) and NAME_overlay.png")
    p.add_argument("--overwrite", action="store_true", help="replace earlier predictions in --out (default: refuse)")
    p.set_defaults(func=cmd_predict)

    p = command("summary", "layers, output shapes, parameters and multiply-adds")
    p.add_argument("model", nargs="?", help="a model file; without it, the configuration below")
    p.add_argument("--depth", type=positive_int, help=f"encoder levels (default {DEMO['depth']}, as train; the seed: 5)")
    p.add_argument("--base-filters", type=positive_int,
                   help=f"filters of level 1 (default {DEMO['base_filters']}, as train; the seed: 64)")
    p.add_argument("--upsampling", choices=["transpose", "nearest"], help=f"up-sampling (default {DEMO['upsampling']})")
    p.add_argument("--head", choices=["softmax", "sigmoid"], help="output activation (default softmax)")
    p.add_argument("--size", type=positive_int, default=DEMO["size"], help="input size for the shapes")
    p.set_defaults(func=cmd_summary)

    p = command("gradcheck", "check every layer's, loss's and a tiny U-Net's backward pass")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random inputs and directions")
    p.add_argument("--tol", type=positive_float, default=1e-6, help="largest relative error that passes")
    p.set_defaults(func=cmd_gradcheck)

    p = command("convert", "a Keras .h5 model file to a minunet one, or the reverse")
    p.add_argument("source", help="a Keras .h5 or minunet .h5 model file")
    p.add_argument("target", help="the file to write, in the other format")
    p.add_argument("--overwrite", action="store_true", help="replace TARGET if it exists (default: refuse)")
    p.set_defaults(func=cmd_convert)

    p = command("phantom", "write phantom slices to an HDF5 data set file")
    p.add_argument("--out", required=True, help="the .h5 file to write")
    p.add_argument("--n", type=positive_int, default=500, help="slices")
    p.add_argument("--size", type=positive_int, default=128, help="slice size in pixels")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    p.add_argument("--labels", choices=["disc", "multiclass"], default="disc", help="mask labels")
    p.add_argument("--preview", help="also draw a grid of samples to this PNG (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace --out / --preview if they exist (default: refuse)")
    p.set_defaults(func=cmd_phantom)
    return parser


def default_threads():
    """BLAS threads when --threads is not given: None (leave the libraries alone) when
    $OMP_NUM_THREADS or a BLAS-specific variable is set; otherwise the CPUs this process
    may use that other processes do not already keep busy (the 1-minute load average),
    at least 1. Oversubscribed BLAS threads spin and wait for each other: beside two
    busy processes on 2 cores, the demo took several times longer with 2 threads than with 1."""
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def _limit_threads(n):
    """threadpoolctl's limit on BLAS (and OpenMP) threads, or a no-op without a limit."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # --help, --version, or a bad argument already printed on one line
        return e.code
    from .data import DataError
    from .h5file import WriteError

    try:
        backend.use(args.backend or backend.requested())
    except (RuntimeError, ValueError) as e:
        hint = ("" if args.backend or "MINUNET_BACKEND" in str(e) else
                f" (asked for by MINUNET_BACKEND={os.environ.get('MINUNET_BACKEND')}; --backend numpy overrides it)")
        print(f"minunet {args.command}: error: {e}{hint}", file=sys.stderr)
        return 2
    try:
        args.blas_threads = args.threads or default_threads()
        with _limit_threads(args.blas_threads):
            return args.func(args)
    except WriteError as e:
        # no error number: a short write (numpy's "N requested and M written"), which a full disk gives
        fix = "free some space or write elsewhere" if e.errno in (errno.ENOSPC, None) else "write elsewhere"
        preview = getattr(args, "preview", None)
        where = ("another TARGET" if args.command == "convert" else
                 "another --preview" if preview and _same_file(e.path, preview) else "another --out")
        print(f"minunet {args.command}: error: {e}; {fix} ({where}); the earlier file, if any, is untouched",
              file=sys.stderr)
        return 2
    except (UsageError, DataError, RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"minunet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"minunet {args.command}: error: {e.filename or ''}{': ' if e.filename else ''}"
              f"{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minunet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
