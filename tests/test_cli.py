"""The minunet command on tiny settings, and its one-line errors."""
import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import minunet
from minunet import data
from minunet.cli import main

TINY = ["--size", "32", "--n-train", "16", "--n-val", "8", "--n-test", "8", "--depth", "2", "--base-filters", "4",
        "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", *TINY, "--out", str(out)]) == 0
    return out


def test_demo_writes_model_pictures_and_metrics(trained, capsys):
    for name in ("model.h5", "best.h5", "last.h5", "curves.png", "overlays.png", "architecture.png", "metrics.json"):
        assert (trained / name).stat().st_size > 0, name
    model = minunet.load(trained / "model.h5")
    assert model.config["depth"] == 2 and model.config["base_filters"] == 4


def test_train_resume_evaluate_predict_summary(trained, tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "3", "--resume", str(trained / "last.h5"), "--out", str(tmp_path / "r")]) == 0
    assert len(minunet.load_checkpoint(tmp_path / "r" / "last.h5").history["loss"]) == 3
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained / "model.h5"), "--size", "32", "--n", "4", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "dice" in out and "hd95" in out and (tmp_path / "e" / "overlays_1.png").exists()
    images, masks = data.phantom.generate(2, size=32, seed=9)
    np.save(tmp_path / "slice.npy", images[0, ..., 0])
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "slice.npy"), "--out", str(tmp_path / "p")]) == 0
    pred = np.load(tmp_path / "p" / "slice_mask.npy")
    assert pred.shape == (32, 32) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, minunet.load(trained / "model.h5").segment(images[:1])[0])
    capsys.readouterr()
    assert main(["summary", "--depth", "1", "--base-filters", "64", "--upsampling", "nearest", "--head", "sigmoid"]) == 0
    assert "Total params: 406,657" in capsys.readouterr().out
    assert main(["summary", str(trained / "model.h5"), "--size", "32"]) == 0


def test_gradcheck_and_phantom_commands(tmp_path, capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert out.count("yes") >= 14 and "NO" not in out
    assert main(["phantom", "--out", str(tmp_path / "d.h5"), "--n", "5", "--size", "32", "--preview", str(tmp_path / "p.png")]) == 0
    images, masks = data.load(tmp_path / "d.h5")
    assert images.shape == (5, 32, 32, 1) and (tmp_path / "p.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "missing.h5"], "missing.h5: no such file"),
    (["train", "--data", "nowhere", "--quiet"], "nowhere: no such file or folder"),
    (["summary", "--depth", "3", "--size", "20"], "--size 20 must be a multiple of 2**depth = 2**3 = 8"),
    (["train", "--label-map", "{bad", "--data", "."], "--label-map '{bad'"),
])
def test_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith(f"minunet {argv[0]}: error:") and "\n" not in err


def test_console_entry_and_help():
    out = subprocess.run([sys.executable, "-m", "minunet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "gradcheck" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "minunet", "train", "--epochs", "many"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == ("minunet train: error: argument --epochs: expected a whole "
                                                          "number, received 'many'; see minunet train --help")


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(quick) == 2 and "demo" in quick[0] and "pytest" in quick[1]
    assert quick[1] in (root / ".ci" / "run").read_text().splitlines()


def test_predict_on_a_volume(trained, tmp_path):
    SimpleITK = pytest.importorskip("SimpleITK")
    volume = np.random.default_rng(0).uniform(0, 100, (32, 32, 3)).astype(np.float32)   # (z, y, x): 3 sagittal slices
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(volume), str(tmp_path / "scan.nii.gz"))
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "p")]) == 0
    masks = np.load(tmp_path / "p" / "scan_mask.npy")
    assert masks.shape == (3, 32, 32) and set(np.unique(masks)) <= {0, 1}
    assert (tmp_path / "p" / "scan_overlay.png").exists()


# ------------------------------------------------ the command line's surface (issue 18)
def _pair_folder(folder, names, size=32):
    images, masks = data.phantom.generate(len(names), size=size, seed=4)
    folder.mkdir(parents=True, exist_ok=True)
    for name, img, mask in zip(names, images[..., 0], masks):
        img = np.uint8(255 * (img - img.min()) / (np.ptp(img) + 1e-6))
        Image.fromarray(img, mode="L").save(folder / f"{name}.png")
        Image.fromarray(mask, mode="L").save(folder / f"{name}_mask.png")
    return images, masks


def test_predict_skips_masks_keeps_whole_stems_and_writes_masks_the_loader_reads(trained, tmp_path, capsys):
    _pair_folder(tmp_path / "scans", ["sub.01", "sub.09"])
    hand_drawn = {p.name: p.read_bytes() for p in (tmp_path / "scans").iterdir()}
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "scans"), "--out", str(out)]) == 0
    assert "skipped 2 mask file(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"sub.0{i}_{k}" for i in (1, 9)
                                                           for k in ("mask.npy", "mask.png", "overlay.png"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "scans").iterdir()} == hand_drawn
    png = Image.open(out / "sub.01_mask.png")
    assert png.mode == "L" and set(np.unique(np.asarray(png))) <= {0, 1}        # single channel, labels 0/1
    np.testing.assert_array_equal(np.asarray(png), np.load(out / "sub.01_mask.npy"))
    shutil.copy(tmp_path / "scans" / "sub.01.png", out / "sub.01.png")      # the image beside its predicted mask
    for p in out.glob("*.npy"):
        p.unlink()
    for p in out.glob("*overlay*"):
        p.unlink()
    (out / "sub.09_mask.png").unlink()
    _, masks = data.load(out)                                                 # minunet reads its own masks back
    np.testing.assert_array_equal(masks[0], np.asarray(png))
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "scans"), "--out", str(out)]) == 2
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "scans"), "--out", str(out),
                 "--overwrite"]) == 0


def test_overlays_are_at_least_the_input_size(trained, tmp_path):
    image = np.random.default_rng(0).uniform(0, 1, (256, 200)).astype(np.float32)
    np.save(tmp_path / "big.npy", image)
    assert main(["predict", "--model", str(trained / "model.h5"), str(tmp_path / "big.npy"), "--out", str(tmp_path / "p")]) == 0
    height, width = np.asarray(Image.open(tmp_path / "p" / "big_overlay.png")).shape[:2]
    assert height >= 2 * 256 and width >= 200          # two panels (image, prediction) of 256x200, one above the other


def test_a_rerun_with_overwrite_writes_only_its_own_files(trained, tmp_path, capsys):
    """An earlier run's best.h5 is never taken for this run's model: a run without a validation set
    writes model.h5 from its own last epoch, and removes the stale best.h5 it replaced."""
    out = tmp_path / "run"
    shutil.copytree(trained, out)                                   # an earlier run: best.h5, metrics.json, ...
    _pair_folder(tmp_path / "d", [f"s{i}" for i in range(6)])
    argv = ["train", "--data", str(tmp_path / "d"), "--val-split", "0", "--test-split", "0.3", "--size", "32",
            "--depth", "2", "--base-filters", "4", "--epochs", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 2                                          # refused: the folder holds another run's files
    assert main([*argv, "--overwrite"]) == 0
    assert "removed best.h5" in capsys.readouterr().out
    assert not (out / "best.h5").exists()
    model, last = minunet.load(out / "model.h5"), minunet.load_checkpoint(out / "last.h5")
    assert len(last.history["loss"]) == 1 and "val_loss" not in last.history
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, last.model.params[k])


def test_backend_and_threads_before_or_after_the_command(monkeypatch):
    from threadpoolctl import threadpool_info

    from minunet import cli

    for argv in (["--backend", "numpy", "--threads", "1", "summary"], ["summary", "--backend", "numpy", "--threads", "1"]):
        assert main([*argv, "--depth", "1", "--base-filters", "2", "--size", "16"]) == 0
    before = [p["num_threads"] for p in threadpool_info()]
    seen = {}

    def record(args):
        seen["blas"] = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        return 0

    monkeypatch.setattr(cli, "cmd_summary", record)
    assert main(["summary", "--threads", "1"]) == 0
    assert seen["blas"] and set(seen["blas"]) == {1}                    # the limit holds while the command runs
    assert [p["num_threads"] for p in threadpool_info()] == before       # and is lifted afterwards


def test_summary_defaults_are_trains(capsys):
    assert main(["summary"]) == 0
    assert "depth 4, base 8" in capsys.readouterr().out


def test_every_flag_has_help_with_its_default():
    from minunet.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in [("minunet", parser), *sub.choices.items()]:
        formatter = p._get_formatter()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            text = formatter._expand_help(action) if action.help else ""
            assert text, f"{name} {action.dest}: no help"
            if action.option_strings and not action.required:
                assert "default" in text, f"{name} {action.option_strings[0]}: help does not give the default: {text}"


def test_following_the_label_map_advice_works(trained, tmp_path, capsys):
    _pair_folder(tmp_path / "d", ["a", "b", "c", "d"])
    for p in (tmp_path / "d").glob("*_mask.png"):                    # labels 0 / 1 / 2 (2: a band at the bottom)
        m = np.asarray(Image.open(p)).copy()
        m[-3:] = 2
        Image.fromarray(m, mode="L").save(p)
    argv = ["evaluate", "--model", str(trained / "model.h5"), "--data", str(tmp_path / "d")]
    assert main(argv) == 2
    advice = capsys.readouterr().err.split("e.g. --label-map '", 1)[1].split("'", 1)[0]
    assert json.loads(advice) == {"0": 0, "1": 1, "2": 0}
    assert main([*argv, "--label-map", advice]) == 0


def test_readme_names_every_output_file():
    from pathlib import Path

    from minunet.cli import TRAIN_OUTPUTS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for name in (*TRAIN_OUTPUTS, "NAME_mask.npy", "NAME_mask.png", "NAME_overlay.png"):
        assert f"`{name}`" in section, name


def test_keras_continues_training_from_minunets_export(trained, tmp_path):
    """The README's path to Keras: `minunet convert`, keras.models.load_model, compile, fit."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    assert main(["convert", str(trained / "model.h5"), str(tmp_path / "keras.h5")]) == 0
    model = keras.models.load_model(tmp_path / "keras.h5", compile=False)
    images, masks = data.phantom.generate(8, size=32, seed=5)
    ours = minunet.load(trained / "model.h5").predict(images)
    np.testing.assert_allclose(model.predict(images, verbose=0), ours, atol=1e-4)     # the same network
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    before = model.evaluate(images, masks, verbose=0)
    model.fit(images, masks, epochs=5, batch_size=4, verbose=0)
    after = model.evaluate(images, masks, verbose=0)
    assert after < before                                            # Keras trains on from minunet's weights
    model.save(tmp_path / "continued.h5")                            # and minunet reads the result back
    np.testing.assert_allclose(minunet.load(tmp_path / "continued.h5").predict(images), model.predict(images, verbose=0),
                               atol=1e-4)
