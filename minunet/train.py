"""Training: ``fit`` runs epochs of mini-batches with a loss, validation, callbacks,
checkpoints, early stopping and a learning-rate schedule.

    history = fit(model, Adam(model.params), (images, masks), val=(vi, vm),
                  epochs=20, batch_size=8, loss="ce+dice",
                  callbacks=[ModelCheckpoint("out"), EarlyStopping(patience=5)])

One step: logits = model.forward(x); loss, dlogits = loss_fn(logits, y);
model.backward(dlogits, input_gradient=False); optimizer.step(model.grads).

Ctrl-C is caught between two steps (never inside one): the callbacks save a
checkpoint of that exact point (mid-epoch included) and ``fit`` returns with
``history["stopped"] == "interrupted"``. ``resume(path, ...)`` continues from a
checkpoint; batches and augmentation depend only on (seed, epoch), so the resumed
run gives the same numbers as one that was never interrupted.
"""
import math
import signal
import threading
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import losses as losses_module
from . import metrics
from .backend import asarray, to_numpy
from .data.batching import batches
from .model import labels, load_checkpoint


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite: the run diverged. Nothing was saved
    from the diverged step on, so the last checkpoint written (if any) is the last good one."""

    def __init__(self, value, epoch, batch, lr):
        self.value, self.epoch, self.batch, self.lr = value, epoch, batch, lr
        super().__init__(f"fit: the loss became {value} at epoch {epoch}, batch {batch}; "
                         f"lower the learning rate (now {lr:g})")


# ----------------------------------------------------------------- callbacks
class Callback:
    """Hooks called by ``fit``; ``state``/``load_state`` let a checkpoint carry them."""

    def on_epoch_begin(self, epoch, trainer):
        pass

    def on_epoch_end(self, epoch, logs, trainer):
        """Return True to stop training."""
        return False

    def on_interrupt(self, trainer):
        pass

    def state(self):
        return {}

    def load_state(self, state):
        pass


class ModelCheckpoint(Callback):
    """Writes ``last.h5`` after every epoch (and on Ctrl-C) and ``best.h5`` when
    ``monitor`` improves; both hold the optimizer and training state. ``wrote_best``
    says whether this callback wrote ``best.h5`` (a resumed run's earlier best may
    live in another folder)."""

    def __init__(self, folder, monitor="val_dice", mode="max"):
        self.folder = Path(folder)
        self.monitor, self.mode = monitor, mode
        self.best = None
        self.wrote_best = False

    def _better(self, value):
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_epoch_end(self, epoch, logs, trainer):
        trainer.save(self.folder / "last.h5")
        value = logs.get(self.monitor)
        if value is not None and not math.isnan(value) and self._better(value):
            self.best = value
            trainer.save(self.folder / "best.h5")
            self.wrote_best = True
        return False

    def on_interrupt(self, trainer):
        trainer.save(self.folder / "last.h5")

    def state(self):
        return {"best": self.best}

    def load_state(self, state):
        self.best = state.get("best")


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_dice", patience=10, mode="max", min_delta=0.0):
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best, self.wait = None, 0

    def on_epoch_end(self, epoch, logs, trainer):
        value = logs.get(self.monitor)
        if value is None or math.isnan(value):
            return False
        sign = 1 if self.mode == "max" else -1
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return self.wait >= self.patience

    def state(self):
        return {"best": self.best, "wait": self.wait}

    def load_state(self, state):
        self.best, self.wait = state.get("best"), state.get("wait", 0)


class LearningRateScheduler(Callback):
    """Sets ``optimizer.lr = schedule(epoch)`` at the start of every epoch."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, trainer):
        trainer.optimizer.lr = float(self.schedule(epoch))


def cosine_decay(lr, epochs, final=0.05, warmup=0):
    """lr(epoch): linear warm-up, then a half cosine from lr down to final * lr."""
    def schedule(epoch):
        if epoch < warmup:
            return lr * (epoch + 1) / warmup
        t = (epoch - warmup) / max(epochs - warmup - 1, 1)
        return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    return schedule


# ------------------------------------------------------------------- trainer
class _Trainer:
    """The state of one run: what a checkpoint must hold to continue it exactly."""

    def __init__(self, model, optimizer, callbacks, history, state):
        self.model, self.optimizer, self.callbacks = model, optimizer, callbacks
        self.history = history
        self.state = state  # epoch, batch, loss_sum, seen, seed, ...

    def save(self, path):
        state = dict(self.state, lr=self.optimizer.lr, callbacks=[cb.state() for cb in self.callbacks])
        self.model.save(path, optimizer=self.optimizer, history=self.history, state=state)


class _DeferredInterrupt:
    """Turns the first SIGINT into a flag checked between steps (main thread only); a
    second Ctrl-C stops at once, as usual."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def evaluate(model, images, masks, loss="ce", batch_size=8):
    """(mean loss, mean foreground Dice) of a model on labelled images."""
    loss_fn = losses_module.get(loss)
    total, preds = 0.0, []
    for start in range(0, len(images), batch_size):
        x = asarray(images[start : start + batch_size], dtype=model.dtype)
        y = asarray(masks[start : start + batch_size])
        logits = model.forward(x, training=False)
        total += float(loss_fn(logits, y)[0]) * len(x)
        preds.append(labels(to_numpy(model.activation(logits))))
    n_classes = max(model.config["n_classes"], 2)
    return total / len(images), metrics.dice(np.concatenate(preds), np.asarray(masks), n_classes)


def fit(model, optimizer, train, val=None, epochs=100, batch_size=8, loss="ce", augment=None,
        callbacks=(), seed=0, verbose=1, history=None, state=None):
    """Train ``model`` on ``train = (images, masks)``; returns the history dict
    (per epoch: loss, lr, and val_loss / val_dice with ``val``).

    ``history`` and ``state`` continue an earlier run (see ``resume``)."""
    images, masks = train
    if len(images) == 0:
        raise ValueError("fit: the training set is empty")
    for name, (x, y) in (("training", train), ("validation", val or (images[:0], masks[:0]))):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"fit: the {name} images contain NaN or infinite pixels; clean or drop those slices")
        if len(x) != len(y) or x.shape[:3] != y.shape:
            raise ValueError(f"fit: {name} images {x.shape} and masks {y.shape} do not match")
    loss_fn = losses_module.get(loss)
    callbacks = list(callbacks)
    history = history if history is not None else {"loss": [], "lr": []}
    if val is not None:
        history.setdefault("val_loss", [])
        history.setdefault("val_dice", [])
    state = dict(state or {"epoch": 0, "batch": 0, "loss_sum": 0.0, "seen": 0})
    state.update(seed=seed, loss=loss, batch_size=batch_size)
    for cb, cb_state in zip(callbacks, state.pop("callbacks", [])):
        cb.load_state(cb_state)
    if "lr" in state:
        optimizer.lr = state.pop("lr")
    trainer = _Trainer(model, optimizer, callbacks, history, state)
    n_batches = math.ceil(len(images) / batch_size)

    with _DeferredInterrupt() as interrupt:
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            if state["batch"] == 0:
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, trainer)
            bar = tqdm(total=n_batches, initial=state["batch"], desc=f"epoch {epoch + 1}/{epochs}",
                       disable=verbose == 0, leave=True, dynamic_ncols=True)
            for i, (x, y) in enumerate(batches(images, masks, batch_size, True, seed, epoch, augment)):
                if i < state["batch"]:
                    continue              # done before the checkpoint; drawn again to replay the RNG
                logits = model.forward(asarray(x, dtype=model.dtype))
                value, dlogits = loss_fn(logits, asarray(y))
                if not np.isfinite(float(value)):
                    bar.close()
                    raise DivergedError(float(value), epoch + 1, i + 1, optimizer.lr)
                model.backward(dlogits, input_gradient=False)
                optimizer.step(model.grads)
                state["batch"] = i + 1
                state["loss_sum"] += float(value) * len(x)
                state["seen"] += len(x)
                bar.update(1)
                bar.set_postfix(loss=f"{state['loss_sum'] / state['seen']:.4f}")
                if interrupt.requested:
                    break
            if interrupt.requested and state["batch"] < n_batches:
                bar.close()
                for cb in callbacks:
                    cb.on_interrupt(trainer)
                history["stopped"] = "interrupted"
                return history
            logs = {"loss": state["loss_sum"] / state["seen"], "lr": optimizer.lr}
            if val is not None:
                logs["val_loss"], logs["val_dice"] = evaluate(model, val[0], val[1], loss, batch_size)
            for k, v in logs.items():
                history[k].append(float(v))
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"})
            bar.close()
            state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, seen=0)
            stop = [cb.on_epoch_end(epoch, logs, trainer) for cb in callbacks]
            if any(stop):
                history["stopped"] = f"early stopping after epoch {epoch + 1}"
                break
            if interrupt.requested:
                for cb in callbacks:
                    cb.on_interrupt(trainer)
                history["stopped"] = "interrupted"
                break
    return history


def resume(path, train, val=None, epochs=100, augment=None, callbacks=(), verbose=1):
    """Continue the run saved in checkpoint ``path``: same loss, batch size and seed.
    Returns (model, optimizer, history)."""
    ck = load_checkpoint(path)
    if ck.optimizer is None or "epoch" not in ck.state:
        raise ValueError(f"{path}: holds no training state; resume from a last.h5 or best.h5 written by fit")
    st = dict(ck.state)
    history = fit(ck.model, ck.optimizer, train, val, epochs=epochs, batch_size=st["batch_size"], loss=st["loss"],
                  augment=augment, callbacks=callbacks, seed=st["seed"], verbose=verbose,
                  history=ck.history, state=st)
    return ck.model, ck.optimizer, history
