"""fit: the loss falls, checkpoints, early stopping, Ctrl-C and resume."""
import os
import signal

import numpy as np
import pytest

import minunet
from minunet import data
from minunet.train import (EarlyStopping, LearningRateScheduler, ModelCheckpoint, cosine_decay,
                           evaluate, fit, resume)


@pytest.fixture(scope="module")
def tiny():
    images, masks = data.phantom.generate(24, size=32, seed=0)
    return (images[:16], masks[:16]), (images[16:], masks[16:])


def _model():
    return minunet.UNet(depth=2, base_filters=4, seed=0)


def test_loss_falls_on_a_tiny_problem(tiny):
    train, val = tiny
    model = _model()
    history = fit(model, minunet.Adam(model.params, 1e-2), train, val, epochs=6, batch_size=4, loss="ce", verbose=0)
    assert len(history["loss"]) == 6 and len(history["val_dice"]) == 6
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    loss, dice = evaluate(model, *val, loss="ce")
    assert loss == pytest.approx(history["val_loss"][-1]) and dice == pytest.approx(history["val_dice"][-1])


def test_interrupt_then_resume_equals_uninterrupted(tiny, tmp_path, monkeypatch):
    train, val = tiny
    aug = data.Augment(rotate=5, scale=0.05)
    ref = _model()
    ref_hist = fit(ref, minunet.Adam(ref.params, 5e-3), train, val, epochs=3, batch_size=4, loss="ce+dice",
                   augment=aug, callbacks=[LearningRateScheduler(cosine_decay(5e-3, 3))], seed=3, verbose=0)

    # the same run, interrupted by a real SIGINT in the middle of epoch 2
    import minunet.train as train_module

    real_batches = train_module.batches
    calls = {"n": 0}

    def batches_with_ctrl_c(*args, **kwargs):
        for batch in real_batches(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 6:                       # epoch 2 (4 batches an epoch), second batch
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    monkeypatch.setattr(train_module, "batches", batches_with_ctrl_c)
    model = _model()
    hist = fit(model, minunet.Adam(model.params, 5e-3), train, val, epochs=3, batch_size=4, loss="ce+dice",
               augment=aug, callbacks=[ModelCheckpoint(tmp_path), LearningRateScheduler(cosine_decay(5e-3, 3))],
               seed=3, verbose=0)
    monkeypatch.setattr(train_module, "batches", real_batches)
    assert hist["stopped"] == "interrupted" and len(hist["loss"]) == 1
    ck = minunet.load_checkpoint(tmp_path / "last.h5")
    assert ck.state["epoch"] == 1 and ck.state["batch"] == 2

    model2, _, hist2 = resume(tmp_path / "last.h5", train, val, epochs=3, augment=aug,
                              callbacks=[ModelCheckpoint(tmp_path), LearningRateScheduler(cosine_decay(5e-3, 3))],
                              verbose=0)
    assert hist2["loss"] == ref_hist["loss"] and hist2["val_dice"] == ref_hist["val_dice"]
    for k in ref.params:
        np.testing.assert_array_equal(model2.params[k], ref.params[k])
    assert (tmp_path / "best.h5").exists()


def test_early_stopping_and_schedule():
    stop = EarlyStopping(patience=2)
    assert [stop.on_epoch_end(e, {"val_dice": v}, None) for e, v in enumerate([0.5, 0.6, 0.6, 0.55])] == [False, False, False, True]
    schedule = cosine_decay(1e-2, 11, final=0.1)
    assert schedule(0) == pytest.approx(1e-2) and schedule(10) == pytest.approx(1e-3) and schedule(5) == pytest.approx(5.5e-3)
    warm = cosine_decay(1e-2, 10, warmup=2)
    assert warm(0) == pytest.approx(5e-3) and warm(1) == pytest.approx(1e-2)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_fit_rejects_bad_input(tiny):
    train, _ = tiny
    model = _model()
    with pytest.raises(ValueError, match="training set is empty"):
        fit(model, minunet.Adam(model.params), (train[0][:0], train[1][:0]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        fit(model, minunet.Adam(model.params), train, epochs=1, loss="focal", verbose=0)
    with pytest.raises(ValueError, match="training images contain NaN"):
        fit(model, minunet.Adam(model.params), (train[0] * np.float32(np.nan), train[1]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"training images \(16, 32, 32, 1\) and masks \(16, 32, 31\) do not match"):
        fit(model, minunet.Adam(model.params), (train[0], train[1][..., :31]), epochs=1, verbose=0)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(model, minunet.Adam(model.params, lr=1e9), train, epochs=3, verbose=0)
