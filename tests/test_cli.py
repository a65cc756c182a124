"""The minunet command on tiny settings, and its one-line errors."""
import subprocess
import sys

import numpy as np
import pytest

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
    (["summary", "--depth", "3", "--size", "20"], "multiples of 2**3 = 8"),
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
    assert bad.returncode == 2 and "invalid int value: 'many'" in bad.stderr


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
