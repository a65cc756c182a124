"""Fine-tuning from the command line: --init, model files that record their input size,
masks returned at the input's size, per-slice reports, --val-data and --cv."""
import json

import h5py
import matplotlib.image
import numpy as np
import pytest

import minunet
from minunet import data, keras_h5
from minunet.cli import DEMO, FINETUNE, main, segment_at
from minunet.train import cosine_decay

TINY = ["--depth", "1", "--base-filters", "2", "--quiet"]


def _folder(path, n, size, seed=0):
    """n phantom slices as case_NN.npz files (raw 0..255 intensities, as the real slices)."""
    images, masks = data.phantom.generate(n, size=size, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        raw = (images[i, ..., 0] - images[i].min()) * 40
        np.savez(path / f"case_{i + 1:02d}.npz", image=raw.astype(np.float32), mask=masks[i])
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model trained at 32 px on the phantom (depth 1, base 2)."""
    out = tmp_path_factory.mktemp("base")
    assert main(["train", *TINY, "--size", "32", "--n-train", "8", "--n-val", "4", "--n-test", "4", "--epochs", "1",
                 "--out", str(out)]) == 0
    return out / "model.h5"


def _weights(model):
    return {k: np.array(v) for k, v in model.params.items()}


def test_model_file_records_size_normalization_and_label_map(base):
    meta = minunet.load(base).metadata
    assert meta["size"] == [32, 32]
    assert meta["label_map"] == {"0": 0, "1": 1}
    assert meta["normalization"]["low"] == 0.5 and meta["normalization"]["high"] == 99.5


def test_a_file_without_metadata_still_loads_and_runs_at_the_input_size(base, tmp_path, capsys):
    model = minunet.load(base)
    model.metadata = None
    model.save(tmp_path / "old.h5")                            # what minunet wrote before metadata existed
    with h5py.File(tmp_path / "old.h5", "r") as f:
        assert "metadata" not in f.attrs and f.attrs["format_version"] == 1
    old = minunet.load(tmp_path / "old.h5")
    assert old.metadata is None
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(old.params[k], v)
    folder = _folder(tmp_path / "d", 2, 64)
    assert main(["evaluate", "--model", str(tmp_path / "old.h5"), "--data", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "records no training size; running at each input's own size" in captured.err
    assert "2 slices of 64x64 (scored at their own size)" in captured.out


def test_init_from_a_minunet_file_keeps_its_weights_and_starts_a_fresh_run(base, tmp_path, capsys):
    folder = _folder(tmp_path / "d", 6, 32)
    out = tmp_path / "f"
    # a learning rate of 1e-12 leaves the weights where --init put them
    assert main(["train", "--data", str(folder), "--init", str(base), "--epochs", "2", "--lr", "1e-12",
                 "--val-split", "0", "--test-split", "0", "--quiet", "--out", str(out)]) == 0
    start, tuned = minunet.load(base), minunet.load_checkpoint(out / "last.h5")
    assert tuned.model.config == start.config
    for k, v in _weights(start).items():
        np.testing.assert_allclose(tuned.model.params[k], v, atol=1e-9)
    assert tuned.optimizer.iterations == 2 * 2                  # fresh optimizer: 2 epochs of ceil(6 / 4) batches
    assert len(tuned.history["loss"]) == 2                      # fresh epoch count and history
    assert tuned.state["batch_size"] == 4                       # the fine-tuning recipe's default
    assert tuned.model.metadata["size"] == [32, 32]             # native: no --size given
    out_text = capsys.readouterr().out
    assert "from " + str(base) in out_text and "strong augmentation" in out_text and "lr 1e-12" in out_text


def test_init_from_a_keras_file(base, tmp_path):
    keras_file = tmp_path / "k.h5"
    keras_h5.save(minunet.load(base), keras_file)
    assert keras_h5.is_keras_file(keras_file)
    folder = _folder(tmp_path / "d", 4, 32)
    assert main(["train", "--data", str(folder), "--init", str(keras_file), "--epochs", "1", "--lr", "1e-12",
                 "--val-split", "0", "--test-split", "0", "--augment", "none", "--quiet",
                 "--out", str(tmp_path / "f")]) == 0
    tuned = minunet.load(tmp_path / "f" / "model.h5")
    for k, v in _weights(minunet.load(base)).items():
        np.testing.assert_allclose(tuned.params[k], v, atol=1e-9)


@pytest.mark.parametrize("flags, message", [
    (["--depth", "3"], "--depth 3 contradicts"),
    (["--base-filters", "8"], "--base-filters 8 contradicts"),
    (["--upsampling", "nearest"], "--upsampling nearest contradicts"),
    (["--resume", "x.h5"], "--init starts a new run"),
    (["--cv", "1"], "--cv 1: cross-validation needs 2 <= k <= 4"),
    (["--size", "21"], "--size 21 must be a multiple of 2**depth = 2"),
])
def test_bad_init_and_cv_flags_are_one_line_errors(base, tmp_path, capsys, flags, message):
    folder = _folder(tmp_path / "d", 4, 32)
    code = main(["train", "--data", str(folder), "--init", str(base), *flags, "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_an_agreeing_architecture_flag_is_accepted(base, tmp_path):
    folder = _folder(tmp_path / "d", 4, 32)
    assert main(["train", "--data", str(folder), "--init", str(base), "--depth", "1", "--epochs", "1",
                 "--val-split", "0", "--test-split", "0", "--quiet", "--out", str(tmp_path / "o")]) == 0


def test_predict_and_evaluate_run_at_the_recorded_size_and_answer_at_the_input_size(base, tmp_path, capsys):
    model = minunet.load(base)
    folder = _folder(tmp_path / "d", 3, 64, seed=5)
    images, masks, names = data.load(folder, names=True)
    # by hand: each 64 px slice resampled to the model's 32, probabilities back to 64
    x = data.normalize(data.resize(images[..., 0], 32))[..., None]
    probs = model.predict(x)                                                        # (3, 32, 32, 2)
    up = np.stack([data.resize(probs[..., c], 64) for c in range(2)], axis=-1)      # (3, 64, 64, 2)
    expected = up.argmax(-1).astype(np.uint8)
    np.testing.assert_array_equal(segment_at(model, images, (32, 32)), expected)
    np.testing.assert_array_equal(segment_at(model, images[:, :32, :32], (32, 32)), model.segment(images[:, :32, :32]))

    np.save(tmp_path / "slice.npy", np.load(folder / "case_01.npz")["image"])
    assert main(["predict", "--model", str(base), str(tmp_path / "slice.npy"), "--out", str(tmp_path / "p")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p" / "slice_mask.npy"), expected[0])

    capsys.readouterr()
    assert main(["evaluate", "--model", str(base), "--data", str(folder), "--out", str(tmp_path / "e")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""                                   # the recorded size: no notice
    assert "3 slices of 64x64 (run at 32x32, scored at their own size)" in captured.out
    rows = json.loads((tmp_path / "e" / "per_slice.json").read_text())
    scores = minunet.metrics.per_image(expected, masks)
    assert [r["name"] for r in rows] == ["case_01", "case_02", "case_03"]
    np.testing.assert_allclose([r["dice"] for r in rows], scores["dice"][:, 0])
    np.testing.assert_allclose([r["iou"] for r in rows], scores["iou"][:, 0])
    csv = (tmp_path / "e" / "per_slice.csv").read_text().splitlines()
    assert csv[0] == "name,dice,iou,hd95" and len(csv) == 4
    name, dice, iou, hd = csv[1].split(",")
    assert name == "case_01" and float(dice) == pytest.approx(rows[0]["dice"], abs=1e-4)
    assert (tmp_path / "e" / "overlays_1.png").stat().st_size > 0
    summary = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert summary["dice"] == pytest.approx(np.mean([r["dice"] for r in rows]))

    assert main(["evaluate", "--model", str(base), "--data", str(folder), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "--size 64 differs from the size the model was trained at (32x32)" in err and err.count("\n") == 1


def test_overlay_pages_hold_every_slice(tmp_path):
    images, masks = data.phantom.generate(5, size=32, seed=1)
    paths = minunet.plots.overlay_pages(images, masks, masks, [f"s{i}" for i in range(5)], tmp_path / "o", per_page=2)
    assert [p.name for p in paths] == ["o_1.png", "o_2.png", "o_3.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_cv_prints_and_writes_each_fold_and_the_mean(base, tmp_path, capsys):
    folder = _folder(tmp_path / "d", 4, 32)
    out = tmp_path / "cv"
    assert main(["train", "--data", str(folder), "--cv", "4", "--epochs", "1", "--size", "32", *TINY,
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "cv.json").read_text())
    assert result["folds"] == 4 and len(result["per_fold"]) == 4
    held_out = [s["name"] for f in result["per_fold"] for s in f["test"]]
    assert sorted(held_out) == ["case_01", "case_02", "case_03", "case_04"]       # each slice held out once
    for f in result["per_fold"]:
        assert not set(f["train"]) & {s["name"] for s in f["test"]}
        assert f["dice"] == pytest.approx(np.mean([s["dice"] for s in f["test"]]))
        assert f"fold {f['fold']}/4: held-out Dice {f['dice']:.3f}" in text
    dice = [f["dice"] for f in result["per_fold"]]
    assert result["dice_mean"] == pytest.approx(np.mean(dice)) and result["dice_sd"] == pytest.approx(np.std(dice, ddof=1))
    assert f"held-out Dice {np.mean(dice):.3f} +- {np.std(dice, ddof=1):.3f}" in text


def test_cv_with_init_starts_every_fold_from_the_file(base, tmp_path):
    folder = _folder(tmp_path / "d", 4, 32)
    out = tmp_path / "cv"
    assert main(["train", "--data", str(folder), "--init", str(base), "--cv", "2", "--epochs", "1", "--lr", "1e-12",
                 "--quiet", "--out", str(out)]) == 0
    start = _weights(minunet.load(base))
    for k in (1, 2):
        fold = minunet.load(out / f"fold{k}" / "model.h5")
        for name, v in start.items():
            np.testing.assert_allclose(fold.params[name], v, atol=1e-9)


def test_val_data_and_the_note_on_a_one_slice_split(base, tmp_path, capsys):
    train_folder, val_folder = _folder(tmp_path / "t", 10, 32), _folder(tmp_path / "v", 3, 32, seed=7)
    assert main(["train", "--data", str(train_folder), *TINY, "--size", "32", "--epochs", "1",
                 "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "10 slices -> 8 train, 1 validation, 1 test" in captured.out
    assert "--val-split 0.1 of 10 slices leaves 1 validation slice, whose score says little" in captured.err
    assert "--test-split 0.1 of 10 slices leaves 1 test slice" in captured.err
    assert main(["train", "--data", str(train_folder), "--val-data", str(val_folder), "--test-split", "0", *TINY,
                 "--size", "32", "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "10 slices -> 10 train, 0 validation, 0 test" in captured.out and "3 validation slices" in captured.out
    ck = minunet.load_checkpoint(tmp_path / "b" / "last.h5")
    assert len(ck.history["val_dice"]) == 1


@pytest.mark.parametrize("flag, preset", [([], "none"), (["--augment"], "light"), (["--augment", "strong"], "strong"),
                                          (["--no-augment"], "none")])
def test_augment_presets_from_the_command_line(tmp_path, capsys, flag, preset):
    folder = _folder(tmp_path / "d", 4, 32)
    assert main(["train", "--data", str(folder), *TINY, "--size", "32", "--epochs", "1", *flag, "--val-split", "0",
                 "--test-split", "0", "--out", str(tmp_path / "o")]) == 0
    assert f"{preset} augmentation" in capsys.readouterr().out


def test_the_source_repository_layout_loads(tmp_path):
    """input/images/N.png + input/masks/N.npy (0 background, 1 disc, 2 vertebra), as in
    github.com/sulaimanvesal/vertebraeSegementation."""
    rng = np.random.default_rng(0)
    (tmp_path / "input" / "images").mkdir(parents=True)
    (tmp_path / "input" / "masks").mkdir()
    for n in (1, 2, 10):
        matplotlib.image.imsave(tmp_path / "input" / "images" / f"{n}.png", rng.integers(0, 255, (16, 16)),
                                cmap="gray", vmin=0, vmax=255)
        labels = np.zeros((16, 16), np.uint8)
        labels[4:6, 3:12], labels[8:12, 3:12] = 1, 2
        np.save(tmp_path / "input" / "masks" / f"{n}.npy", labels)
    images, masks, names = data.load(tmp_path / "input", label_map={0: 0, 1: 1, 2: 0}, names=True)
    assert images.shape == (3, 16, 16, 1) and masks.shape == (3, 16, 16)
    assert names == ["1", "10", "2"]
    assert masks.sum(axis=(1, 2)).tolist() == [18, 18, 18]
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-5)


def test_resume_of_a_fine_tuning_run_keeps_its_settings(base, tmp_path):
    folder = _folder(tmp_path / "d", 4, 32)
    out = tmp_path / "f"
    assert main(["train", "--data", str(folder), "--init", str(base), "--epochs", "2", "--val-split", "0",
                 "--test-split", "0", "--quiet", "--out", str(out)]) == 0
    lr = FINETUNE["lr"]
    assert lr != DEMO["lr"]
    assert minunet.load_checkpoint(out / "last.h5").state["run"] == {"size": None, "epochs": 2, "lr": lr,
                                                                     "augment": "strong"}
    # --resume takes the run's learning rate (the fine-tuning one, not the demo's) and augmentation from the checkpoint
    assert main(["train", "--data", str(folder), "--resume", str(out / "last.h5"), "--epochs", "3", "--val-split", "0",
                 "--test-split", "0", "--quiet", "--out", str(tmp_path / "r")]) == 0
    ck = minunet.load_checkpoint(tmp_path / "r" / "last.h5")
    assert len(ck.history["loss"]) == 3 and ck.state["run"]["augment"] == "strong"
    assert ck.history["lr"][2] == pytest.approx(cosine_decay(lr, 3)(2)) == pytest.approx(0.05 * lr)


def test_folds_deal_every_slice_to_exactly_one_test_fold():
    parts = data.folds(12, 4, seed=3)
    tests = np.concatenate([test for _, test in parts])
    assert sorted(tests.tolist()) == list(range(12)) and [len(t) for _, t in parts] == [3, 3, 3, 3]
    for train, test in parts:
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(12))
    assert [len(t) for _, t in data.folds(10, 4)] == [3, 3, 2, 2]
    np.testing.assert_array_equal(data.folds(12, 4, seed=3)[1][1], parts[1][1])       # the seed fixes the folds
    with pytest.raises(ValueError, match="2 <= k <= 3"):
        data.folds(3, 4)


def test_cv_over_an_earlier_cv_with_overwrite_leaves_only_this_runs_models(base, tmp_path, capsys):
    folder, val_folder = _folder(tmp_path / "d", 6, 32), _folder(tmp_path / "v", 2, 32, seed=7)
    out = tmp_path / "cv"
    assert main(["train", "--data", str(folder), "--init", str(base), "--cv", "3", "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5")) == [
        "fold1/model.h5", "fold2/model.h5", "fold3/model.h5"]
    capsys.readouterr()
    # two folds, now with a validation set: fold3 is stale; each fold keeps the model it scored beside its checkpoints
    assert main(["train", "--data", str(folder), "--init", str(base), "--cv", "2", "--epochs", "2", "--quiet",
                 "--val-data", str(val_folder), "--overwrite", "--out", str(out)]) == 0
    assert "removed fold3/model.h5 left in" in capsys.readouterr().out
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5"))
    assert "fold3/model.h5" not in kept and {"fold1/model.h5", "fold1/last.h5", "fold2/model.h5", "fold2/last.h5"} <= set(kept)
    result = json.loads((out / "cv.json").read_text())
    assert result["folds"] == 2
    for fold in result["per_fold"]:         # the Dice in cv.json is the one of the model.h5 written beside it
        model = minunet.load(out / f"fold{fold['fold']}" / "model.h5")
        images, masks, names = data.load(folder, names=True)
        idx = [names.index(s["name"]) for s in fold["test"]]
        scores = minunet.metrics.per_image(model.segment(images[idx]), masks[idx])
        np.testing.assert_allclose([s["dice"] for s in fold["test"]], scores["dice"][:, 0])


def test_evaluate_with_overwrite_removes_pages_of_an_earlier_longer_run(base, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["evaluate", "--model", str(base), "--n", "13", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("overlays_*.png")) == ["overlays_1.png", "overlays_2.png"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(base), "--n", "3", "--out", str(out), "--overwrite"]) == 0
    assert "removed 1 overlay page(s) left in" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("overlays_*.png")) == ["overlays_1.png"]
    assert len(json.loads((out / "per_slice.json").read_text())) == 3
