"""Every bad input to the ``minunet`` command: one line on stderr, exit code 2, no traceback,
and no input file changed.

Each case builds its files in a fresh folder, runs ``minunet.cli.main(argv)`` (the console
entry point) in-process, and checks the exit code, that stderr is exactly one line holding
the expected words, and that every file present before the run has the same bytes after it
(and that no temporary file was left behind). The first block is issue 18's list; the
second, bad inputs found by trying more. Tiny models (depth 2, base 4, 32x32) keep it fast.
"""
import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import minunet
from minunet import backend, data, h5file
from minunet.cli import main

try:
    import SimpleITK  # noqa: F401
    HAVE_SITK = True
except ImportError:
    HAVE_SITK = False
ON_DATA = ["--size", "32", "--depth", "2", "--base-filters", "4", "--epochs", "1", "--quiet"]
TINY = ["--size", "32", "--n-train", "8", "--n-val", "4", "--n-test", "4", "--depth", "2", "--base-filters", "4",
        "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Files the cases copy: a trained tiny model and its checkpoint, and its Keras export."""
    out = tmp_path_factory.mktemp("tiny")
    assert main(["train", *TINY, "--out", str(out / "run")]) == 0
    minunet.keras_h5.save(minunet.load(out / "run" / "model.h5"), out / "keras.h5")
    return out


class Workspace:
    """A case's folder and the files it may ask for; paths come back as strings for argv."""

    def __init__(self, root, store):
        self.root, self.store = root, store

    def path(self, name):
        return str(self.root / name)

    def _copy(self, source, name):
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, self.root / name)
        return self.path(name)

    def model(self, name="model.h5"):
        return self._copy(self.store / "run" / "model.h5", name)

    def checkpoint(self, name="last.h5"):
        return self._copy(self.store / "run" / "last.h5", name)

    def keras(self, name="keras.h5"):
        return self._copy(self.store / "keras.h5", name)

    def file(self, name, content=b"x"):
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return str(p)

    def pairs(self, folder="pairs", n=4, labels=(0, 1), names=None):
        """A folder of NAME.png + NAME_mask.png (8-bit, single channel) with the given mask labels."""
        images, masks = data.phantom.generate(n, size=32, seed=3)
        d = self.root / folder
        d.mkdir(parents=True, exist_ok=True)
        values = np.array(labels, np.uint8)
        for i, name in enumerate(names or [f"s{i}" for i in range(n)]):
            img = images[i, ..., 0]
            img = np.uint8(255 * (img - img.min()) / (np.ptp(img) + 1e-6))
            Image.fromarray(img, mode="L").save(d / f"{name}.png")
            mask = values[np.minimum(masks[i] + (np.arange(32) > 28)[:, None] * 2, len(values) - 1)]
            Image.fromarray(mask, mode="L").save(d / f"{name}_mask.png")
        return str(d)

    def h5_edit(self, path, edit):
        with h5py.File(path, "r+") as f:
            edit(f)
        return path

    def nan_model(self, value=np.nan, name="nan.h5"):
        model = minunet.load(self.store / "run" / "model.h5")
        model.params["dec1/conv2/kernel"][0, 0, 0, 0] = value
        model.save(self.root / name)
        return self.path(name)

    def nan_checkpoint(self):
        ck = minunet.load_checkpoint(self.store / "run" / "last.h5")
        ck.model.params["enc1/conv1/bias"][0] = np.nan
        ck.model.save(self.root / "last.h5", optimizer=ck.optimizer, history=ck.history, state=ck.state)
        return self.path("last.h5")

    def nifti_2d(self, name="slice.nii"):
        """A 2-D NIfTI-1 file (3x3 float32), written by hand: 348-byte header, 4 bytes of extension flags, data."""
        hdr = np.zeros(348, np.uint8)
        v = hdr.view(np.uint8)
        v[0:4] = np.frombuffer(np.int32(348).tobytes(), np.uint8)
        v[40:56] = np.frombuffer(np.array([2, 3, 3, 1, 1, 1, 1, 1], np.int16).tobytes(), np.uint8)   # dim
        v[70:74] = np.frombuffer(np.array([16, 32], np.int16).tobytes(), np.uint8)                   # float32, 32 bits
        v[76:108] = np.frombuffer(np.ones(8, np.float32).tobytes(), np.uint8)                        # pixdim
        v[108:112] = np.frombuffer(np.float32(352).tobytes(), np.uint8)                              # vox_offset
        v[344:348] = np.frombuffer(b"n+1\0", np.uint8)
        content = hdr.tobytes() + b"\0" * 4 + np.arange(9, dtype=np.float32).tobytes()
        return self.file(name, content)


def _mock_write_error(code):
    """Make every file write fail with OSError(code) half-way, as a full disk or a read-only
    folder does: the temporary file is opened, then writing to it fails."""
    def patch(monkeypatch):
        def failing_fsync(fd):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(h5file.os, "fsync", failing_fsync)
        import matplotlib.figure

        def failing_savefig(self, *a, **k):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig)
    return patch


def _mock_short_write(monkeypatch):
    """A write that stops short with no error number, as numpy's does on a full disk."""
    def failing_fsync(fd):
        raise OSError("65536 requested and 24448 written")

    monkeypatch.setattr(h5file.os, "fsync", failing_fsync)


def _no_cupy(monkeypatch):
    """$MINUNET_BACKEND=cupy on a machine without CuPy (or without a GPU)."""
    monkeypatch.setenv("MINUNET_BACKEND", "cupy")
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setattr(backend, "_import_cupy",
                        lambda: (_ for _ in ()).throw(RuntimeError("backend 'cupy' requested but CuPy is not installed")))


# (id, argv builder, words stderr must hold, optional monkeypatch setup)
ISSUE_CASES = [
    # files lost
    ("predict-into-the-input-folder", lambda w: ["predict", "--model", w.model(), w.pairs(), "--out", w.path("pairs")],
     "is an input of this command", None),
    ("predict-into-the-input-folder-even-with-overwrite",
     lambda w: ["predict", "--model", w.model(), w.pairs(), "--out", w.path("pairs"), "--overwrite"],
     "is an input of this command", None),
    ("predict-two-inputs-one-stem", lambda w: ["predict", "--model", w.model(), w.pairs("a", 1, names=["sub"]) + "/sub.png",
                                               w.pairs("b", 1, names=["sub"]) + "/sub.png", "--out", w.path("o")],
     "would both write", None),
    ("phantom-over-an-existing-model", lambda w: ["phantom", "--out", w.model(), "--n", "2", "--size", "32"],
     "exists; pass --overwrite", None),
    ("convert-onto-itself", lambda w: ["convert", w.model(), w.path("model.h5")], "is an input of this command", None),
    ("convert-onto-itself-with-overwrite", lambda w: ["convert", w.model(), w.path("model.h5"), "--overwrite"],
     "is an input of this command", None),
    # silent wrong results
    ("train-into-a-folder-with-an-older-best.h5",
     lambda w: ["train", *TINY, "--out", str(Path(w.checkpoint("old/best.h5")).parent)], "--overwrite", None),
    ("predict-with-a-nan-weight", lambda w: ["predict", "--model", w.nan_model(), w.pairs(), "--out", w.path("o")],
     "NaN or infinite", None),
    ("evaluate-with-an-inf-weight", lambda w: ["evaluate", "--model", w.nan_model(np.inf), "--n", "2", "--size", "32"],
     "dec1/conv2/kernel holds 1 NaN or infinite", None),
    ("lr-negative", lambda w: ["train", *TINY, "--lr", "-1"], "argument --lr: must be greater than 0", None),
    ("lr-zero", lambda w: ["train", *TINY, "--lr", "0"], "argument --lr: must be greater than 0", None),
    ("masks-without-foreground", lambda w: ["train", *ON_DATA, "--data", w.pairs(labels=(0, 0)), "--out", w.path("o")],
     "no mask marks any disc pixel", None),
    ("evaluate-masks-without-foreground",
     lambda w: ["evaluate", "--model", w.model(), "--data", w.pairs(labels=(0, 0))], "no mask marks any disc pixel", None),
    ("label-map-spider-on-0-1-2", lambda w: ["train", *ON_DATA, "--data", w.pairs(labels=(0, 1, 2)),
                                             "--label-map", "spider", "--out", w.path("o")],
     """--label-map 'spider' marks labels [201, 202, 203, ...] as disc, but the masks hold only [0, 1, 2]: no disc """
     """at all; pass a --label-map that names these labels, e.g. --label-map '{"0": 0, "1": 1, "2": 0}'""", None),
    ("label-map-with-phantom", lambda w: ["train", *TINY, "--label-map", "spider"],
     "--label-map applies to --data PATH, not to the phantom", None),
    # tracebacks instead of one line
    ("batch-size-0", lambda w: ["train", *TINY, "--batch-size", "0"], "argument --batch-size: must be 1 or more", None),
    ("batch-size-negative", lambda w: ["train", *TINY, "--batch-size", "-4"], "argument --batch-size", None),
    ("depth-0", lambda w: ["train", *TINY, "--depth", "0"], "argument --depth: must be 1 or more", None),
    ("base-filters-0", lambda w: ["train", *TINY, "--base-filters", "0"], "argument --base-filters", None),
    ("size-0", lambda w: ["train", *TINY, "--size", "0"], "argument --size: must be 1 or more", None),
    ("n-train-0", lambda w: ["train", *TINY, "--n-train", "0"], "argument --n-train", None),
    ("n-val-0", lambda w: ["train", *TINY, "--n-val", "0"], "argument --n-val", None),
    ("val-split-1.5", lambda w: ["train", "--data", w.pairs(), "--val-split", "1.5"], "argument --val-split", None),
    ("val-split-negative", lambda w: ["train", "--data", w.pairs(), "--val-split", "-0.2"], "argument --val-split", None),
    ("evaluate-size-negative", lambda w: ["evaluate", "--model", w.model(), "--size", "-5"], "argument --size", None),
    ("epochs-0", lambda w: ["train", *TINY, "--epochs", "0"], "argument --epochs: must be 1 or more", None),
    ("epochs-negative", lambda w: ["train", *TINY, "--epochs", "-2"], "argument --epochs", None),
    ("lr-diverging", lambda w: ["train", *TINY, "--epochs", "2", "--lr", "1e6", "--out", w.path("o")],
     "training diverged", None),
    ("lr-nan", lambda w: ["train", *TINY, "--lr", "nan"], "argument --lr: expected a finite number", None),
    ("resume-a-checkpoint-with-a-nan-weight",
     lambda w: ["train", *TINY, "--epochs", "2", "--resume", w.nan_checkpoint(), "--out", w.path("o")],
     "enc1/conv1/bias holds 1 NaN or infinite value(s); the file is damaged", None),
    ("model-without-weights-group",
     lambda w: ["evaluate", "--model", w.h5_edit(w.model(), lambda f: f.__delitem__("weights")), "--n", "2"],
     "has no 'weights' group", None),
    ("keras-file-missing-a-bias",
     lambda w: ["predict", "--model", w.h5_edit(w.keras(), lambda f: f["model_weights/head/head"].__delitem__("bias:0")),
                w.pairs(), "--out", w.path("o")], "lists the weight 'head/bias:0' but the file does not hold it", None),
    ("keras-bad-json-config",
     lambda w: ["summary", w.h5_edit(w.keras(), lambda f: f.attrs.__setitem__("model_config", "{bad"))],
     "keras.h5: its model_config attribute is not valid JSON", None),
    ("minunet-bad-json-config",
     lambda w: ["summary", w.h5_edit(w.model(), lambda f: f.attrs.__setitem__("config", "{bad"))],
     "model.h5: its 'config' attribute is not valid JSON", None),
    ("out-on-a-read-only-file-system", lambda w: ["phantom", "--out", w.path("d.h5"), "--n", "2", "--size", "32"],
     "Read-only file system", _mock_write_error(errno.EROFS)),
    ("predict-out-names-an-existing-file",
     lambda w: ["predict", "--model", w.model(), w.pairs(), "--out", w.file("taken.txt")], "is a file, not a folder", None),
    ("train-out-names-an-existing-file", lambda w: ["train", *TINY, "--out", w.file("taken")], "is a file, not a folder",
     None),
    ("train-on-a-full-disk", lambda w: ["train", *TINY, "--out", w.path("o")], "No space left on device",
     _mock_write_error(errno.ENOSPC)),
    ("phantom-on-a-full-disk-over-an-existing-file",
     lambda w: ["phantom", "--out", w.file("d.h5", b"old data"), "--n", "2", "--size", "32", "--overwrite"],
     "No space left on device", _mock_write_error(errno.ENOSPC)),
    ("minunet-backend-cupy-without-cupy", lambda w: ["summary"], "MINUNET_BACKEND=cupy; --backend numpy overrides it",
     _no_cupy),
    ("predict-a-2d-nifti", lambda w: ["predict", "--model", w.model(), w.nifti_2d(), "--out", w.path("o")],
     "slice.nii: a 2-D image of size (3, 3)" if HAVE_SITK else "slice.nii: reading volumes needs SimpleITK", None),
    ("predict-a-jpg", lambda w: ["predict", "--model", w.model(), w.file("scan.jpg", b"\xff\xd8\xff\xe0"), "--out", w.path("o")],
     "scan.jpg: predict reads .png, .npy, .npz slices", None),
    # confusing
    ("label-map-error-names-the-flag-and-label-0",
     lambda w: ["train", *ON_DATA, "--data", w.pairs(labels=(0, 1, 2)), "--out", w.path("o")],
     """pass every label, e.g. --label-map '{"0": 0, "1": 1, "2": 0}'""", None),
]

MORE_CASES = [   # found by trying more
    ("seed-negative", lambda w: ["train", *TINY, "--seed", "-1"], "argument --seed: must be 0 or more", None),
    ("patience-negative", lambda w: ["train", *TINY, "--patience", "-3"], "argument --patience", None),
    ("epochs-not-a-whole-number", lambda w: ["train", *TINY, "--epochs", "1.5"], "expected a whole number, received '1.5'",
     None),
    ("threads-0", lambda w: ["--threads", "0", "summary"], "argument --threads: must be 1 or more", None),
    ("unknown-flag", lambda w: ["train", "--lrate", "3"], "unrecognized arguments: --lrate 3", None),
    ("no-command", lambda w: [], "the following arguments are required: COMMAND", None),
    ("depth-too-deep-for-size", lambda w: ["train", *TINY, "--depth", "12"], "--size 32 must be a multiple of 2**depth",
     None),
    ("splits-leave-nothing-to-train", lambda w: ["train", "--data", w.pairs(), "--val-split", "0.5", "--test-split", "0.5"],
     "add up to 1 or more", None),
    ("n-train-with-data", lambda w: ["train", "--data", w.pairs(), "--n-train", "5"], "--n-train applies to the phantom",
     None),
    ("val-split-with-phantom", lambda w: ["train", *TINY, "--val-split", "0.2"], "--val-split applies to --data PATH",
     None),
    ("evaluate-n-with-data", lambda w: ["evaluate", "--model", w.model(), "--data", w.pairs(), "--n", "3"],
     "--n applies to the phantom", None),
    ("label-map-null-value", lambda w: ["train", "--data", w.pairs(), "--label-map", '{"1": null}'],
     "label 1 maps to null", None),
    ("label-map-value-2", lambda w: ["train", "--data", w.pairs(), "--label-map", '{"0": 0, "1": 2}'],
     "label 1 maps to 2; map every label to 1 (disc) or 0", None),
    ("label-map-a-list", lambda w: ["train", "--data", w.pairs(), "--label-map", "[1, 2]"], "give a JSON object", None),
    ("label-map-word-key", lambda w: ["train", "--data", w.pairs(), "--label-map", '{"disc": 1}'],
     "key 'disc' is not a whole-number label", None),
    ("masks-0-255-suggest-255-as-disc", lambda w: ["train", *ON_DATA, "--data", w.pairs(labels=(0, 255))],
     """--label-map '{"0": 0, "1": 1, "255": 1}'""", None),
    ("model-is-a-folder", lambda w: ["evaluate", "--model", str(w.root), "--n", "2"], "is a folder, not a file", None),
    ("model-is-keras-weights-only",
     lambda w: ["summary", str(Path(__file__).parent / "fixtures" / "keras" / "unet_d2_k3.weights.h5")],
     "save the whole model from Keras", None),
    ("evaluate-out-over-a-runs-pictures",
     lambda w: ["evaluate", "--model", w.model(), "--n", "2", "--size", "32", "--out",
                str(Path(w.file("run/metrics.json")).parent)], "metrics.json: exists; pass --overwrite", None),
    ("gradcheck-tol-0", lambda w: ["gradcheck", "--tol", "0"], "argument --tol: must be greater than 0", None),
    ("phantom-preview-is-out", lambda w: ["phantom", "--out", w.path("d.png"), "--preview", w.path("d.png")],
     "name the same file", None),
    ("phantom-size-too-small", lambda w: ["phantom", "--out", w.path("d.h5"), "--size", "8", "--n", "2"],
     "--size 8: the phantom draws slices of 16 pixels or more", None),
    ("convert-to-a-folder", lambda w: ["convert", w.model(), str(w.root)], "is a folder; name a file", None),
    ("predict-a-folder-of-masks-only",
     lambda w: ["predict", "--model", w.model(), str(Path(w.file("m/a_mask.png")).parent), "--out", w.path("o")],
     "skipped 1 mask file", None),
    ("resume-with-another-depth",
     lambda w: ["train", *TINY[:8], "--depth", "3", "--resume", w.checkpoint(), "--out", w.path("o")],
     "--depth 3: the checkpoint", None),
    ("resume-a-model-without-training-state", lambda w: ["train", *TINY, "--resume", w.model(), "--out", w.path("o")],
     "holds no training state; pass --resume a last.h5", None),
    ("summary-model-and-depth", lambda w: ["summary", w.model(), "--depth", "3"], "the model file", None),
    ("data-is-a-text-file", lambda w: ["train", "--data", w.file("notes.txt", b"hello")], "cannot load this", None),
    ("predict-an-image-with-nan", lambda w: ["predict", "--model", w.model(),
                                             (np.save(w.root / "nan.npy", np.full((32, 32), np.nan)), w.path("nan.npy"))[1],
                                             "--out", w.path("o")], "NaN or infinite pixels", None),
    ("hdf5-multiclass-masks-without-label-map",
     lambda w: ["train", *ON_DATA, "--data", (data.save_h5(w.root / "mc.h5", *data.phantom.generate(4, 32, labels="multiclass")),
                                               w.path("mc.h5"))[1], "--out", w.path("o")],
     """e.g. --label-map '{"0": 0, "1": 1, "2": 0, "3": 0}'""", None),
    ("backend-unknown-in-environment", lambda w: ["summary"], "unknown backend 'tpu'",
     lambda mp: (mp.setenv("MINUNET_BACKEND", "tpu"), mp.setattr(backend, "_current", None))),
    ("cv-over-an-earlier-cv", lambda w: ["train", *ON_DATA, "--data", w.pairs(n=4), "--cv", "2", "--out",
                                         str(Path(w.file("cv/cv.json")).parent)], "cv.json: exists; pass --overwrite",
     None),
    ("cv-diverging", lambda w: ["train", *ON_DATA, "--data", w.pairs(n=4), "--cv", "2", "--epochs", "2", "--lr", "1e6",
                                "--out", w.path("cvd")], "fold 1 diverged", None),
    # found in the review of the whole change
    ("evaluate-over-a-second-overlay-page",
     lambda w: ["evaluate", "--model", w.model(), "--n", "13", "--size", "32", "--out",
                str(Path(w.file("ev/overlays_2.png")).parent)], "overlays_2.png: exists; pass --overwrite", None),
    ("evaluate-out-is-the-data-folder",
     lambda w: ["evaluate", "--model", w.model(), "--data", w.pairs(), "--out", w.path("pairs")],
     "is in the input folder", None),
    ("train-out-is-the-data-folder", lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--out", w.path("pairs")],
     "is in the input folder", None),
    ("cv-out-is-the-data-folder",
     lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--cv", "2", "--out", w.path("pairs")],
     "is in the input folder", None),
    ("predict-an-empty-npy", lambda w: ["predict", "--model", w.model(),
                                        (np.save(w.root / "empty.npy", np.zeros((0, 32))), w.path("empty.npy"))[1],
                                        "--out", w.path("o")], "an empty image of shape (0, 32)", None),
    ("cv-with-val-split", lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--cv", "2", "--val-split", "0.3"],
     "--val-split does not apply to --cv 2", None),
    ("cv-with-patience", lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--cv", "2", "--patience", "3"],
     "--patience does not apply to --cv 2", None),
    ("val-data-with-val-split",
     lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--val-data", w.pairs("v"), "--val-split", "0.3"],
     "--val-split does not apply with --val-data", None),
    ("init-is-a-folder", lambda w: ["train", "--data", w.pairs(), "--init", str(w.root)], "--init /", None),
    ("val-data-missing", lambda w: ["train", *ON_DATA, "--data", w.pairs(), "--val-data", w.path("nope"),
                                    "--test-split", "0", "--out", w.path("o")], "--val-data /", None),
    ("phantom-short-write", lambda w: ["phantom", "--out", w.path("d.h5"), "--n", "2", "--size", "32"],
     "65536 requested and 24448 written; free some space or write elsewhere (another --out)", _mock_short_write),
    ("label-map-label-twice", lambda w: ["train", "--data", w.pairs(), "--label-map", '{"01": 1, "1": 0, "0": 0}'],
     "label 1 is given twice", None),
]


def _hashes(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("build, expected, setup", [c[1:] for c in ISSUE_CASES + MORE_CASES],
                         ids=[c[0] for c in ISSUE_CASES + MORE_CASES])
def test_bad_input_is_one_line_exit_2_and_changes_no_file(build, expected, setup, store, tmp_path, capsys, monkeypatch):
    w = Workspace(tmp_path, store)
    argv = build(w)
    before = _hashes(tmp_path)
    if setup:
        setup(monkeypatch)
    capsys.readouterr()
    code = main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err      # exactly one line
    assert "Traceback" not in err and expected in err, err
    assert err.startswith("minunet"), err
    after = _hashes(tmp_path)
    for path, digest in before.items():
        assert after.get(path) == digest, f"{path} changed or vanished"
    assert not [p for p in after if p.name.startswith(".tmp-")], "a temporary file was left behind"


def test_the_tables_cover_the_issue_and_ten_more():
    assert len(ISSUE_CASES) >= 40 and len(MORE_CASES) >= 10
    assert len({c[0] for c in ISSUE_CASES + MORE_CASES}) == len(ISSUE_CASES + MORE_CASES)


def test_minunet_backend_cupy_without_cupy_in_a_fresh_process(tmp_path):
    """The variable is read on first need: import and --help work; a command says what to do in one line,
    and --backend numpy (before or after the command) overrides it."""
    env = dict(os.environ, MINUNET_BACKEND="cupy", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if backend.cupy_available():
        pytest.skip("CuPy and a GPU are present")
    run = lambda *argv: subprocess.run([sys.executable, "-m", "minunet", *argv], env=env, capture_output=True,  # noqa: E731
                                       text=True, cwd=tmp_path)
    assert run("--help").returncode == 0
    bad = run("summary", "--depth", "1", "--base-filters", "2", "--size", "16")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--backend numpy overrides it" in bad.stderr
    for argv in (["--backend", "numpy", "summary"], ["summary", "--backend", "numpy"]):
        ok = run(*argv, "--depth", "1", "--base-filters", "2", "--size", "16")
        assert ok.returncode == 0 and "Total params" in ok.stdout, ok.stderr


def test_a_failed_write_keeps_the_old_file_whole(store, tmp_path, monkeypatch):
    """A model save that fails half-way (disk full) leaves the earlier file as it was and no temporary file."""
    target = tmp_path / "model.h5"
    shutil.copy(store / "run" / "model.h5", target)
    old = target.read_bytes()
    model = minunet.UNet(depth=1, base_filters=2)
    _mock_write_error(errno.ENOSPC)(monkeypatch)
    with pytest.raises(h5file.WriteError, match="No space left on device"):
        model.save(target)
    assert target.read_bytes() == old and os.listdir(tmp_path) == ["model.h5"]


def test_a_full_disk_for_real(store, tmp_path):
    """On a real 1 MB tmpfs (root only; skipped where mounting is impossible): phantom fails in one line,
    the old file stays, and the process exits cleanly (HDF5 once crashed here)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "d.h5").write_bytes(b"old")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        done = subprocess.run([sys.executable, "-m", "minunet", "phantom", "--out", str(mnt / "d.h5"), "--n", "100",
                               "--size", "64", "--overwrite"], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "No space left on device" in done.stderr
        assert (mnt / "d.h5").read_bytes() == b"old" and os.listdir(mnt) == ["d.h5"]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_ctrl_c_outside_training_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(data.phantom, "generate", interrupted)
    assert main(["phantom", "--out", str(tmp_path / "d.h5"), "--n", "2", "--size", "32"]) == 130
    assert capsys.readouterr().err == "minunet phantom: interrupted\n" and not os.listdir(tmp_path)
