"""The fine-tuning recipe's cross-validation on the real slices, scored as issue 19 asks.

Each run of

    minunet train --data ../shared/data/real-spine --init D/model.h5 --cv 4 --seed S --out CV_S

writes CV_S/cv.json, with the Dice of every held-out slice by name. This script reads such
files and prints, as Markdown tables:

    one row a run     its settings and seed, the Dice of each fold (all 12 slices), the mean
                      Dice of the 9 mid-sagittal, fully annotated slices, and the 3 slices the
                      data's README flags (case_01 and case_13 para-sagittal, case_04
                      incompletely labelled) apart
    one row a recipe  the runs with the same settings: their seeds and the mean, lowest and
                      highest 9-slice Dice over those seeds

Every slice is held out once in a run, so the 9-slice mean is over 9 models' worth of
unseen slices, not over one split.

Run: python benchmarks/real_cv.py CV_0/cv.json CV_1/cv.json ...
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import phantom_vs_real  # benchmarks/phantom_vs_real.py, beside this file

FLAGGED = tuple(f"case_{k}" for k in phantom_vs_real.FLAGGED)   # para-sagittal or incompletely labelled
SLICES = {f"case_{k:02d}" for k in (1, 2, 4, 6, 7, 9, 11, 13, 14, 15, 17, 18)}   # ../shared/data/real-spine


def score(run):
    """(Dice by slice name, mean Dice over the slices not flagged) of one cv.json."""
    dice = {s["name"]: s["dice"] for fold in run["per_fold"] for s in fold["test"]}
    mid_sagittal = [d for name, d in dice.items() if name not in FLAGGED]
    return dice, float(np.mean(mid_sagittal))


def settings(run):
    """The recipe's flags, in a few words: '200 epochs, lr 0.002, batch 4, strong, ce+dice'."""
    return f"{run['epochs']} epochs, lr {run['lr']:g}, batch {run['batch_size']}, {run['augment']}, {run['loss']}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="cv.json files written by minunet train --cv")
    args = p.parse_args(argv)
    runs = []
    for path in args.files:
        try:
            run = json.loads(path.read_text())
            if not {"seed", "epochs", "lr", "batch_size", "augment", "loss", "per_fold"} <= set(run):
                raise ValueError("keys missing")
            held_out = {s["name"] for fold in run["per_fold"] for s in fold["test"]}
            if held_out != SLICES:
                raise ValueError("its held-out slices are not the 12 of real-spine, case_01 to case_18")
        except (OSError, ValueError) as e:
            print(f"real_cv.py: {path}: not a cv.json of the real slices ({e}); pass the cv.json files that "
                  f"minunet train --data ../shared/data/real-spine --cv K wrote", file=sys.stderr)
            sys.exit(2)
        runs.append(run)
    print(f"| settings | seed | Dice per fold (all slices) | 9 mid-sagittal | {', '.join(FLAGGED)} |")
    print("|---|---|---|---|---|")
    recipes = {}
    for run in sorted(runs, key=lambda r: (r["epochs"], r["lr"], -r["batch_size"], r["augment"], r["seed"])):
        dice, mid9 = score(run)
        recipes.setdefault(settings(run), []).append((run["seed"], mid9))
        folds = ", ".join(f"{fold['dice']:.3f}" for fold in run["per_fold"])
        flagged = ", ".join(f"{dice[name]:.3f}" if name in dice else "-" for name in FLAGGED)
        print(f"| {settings(run)} | {run['seed']} | {folds} | **{mid9:.3f}** | {flagged} |")
    print()
    print("| settings | seeds | 9 mid-sagittal: mean | lowest | highest |")
    print("|---|---|---|---|---|")
    for name, scores in recipes.items():
        seeds, values = zip(*scores)
        print(f"| {name} | {', '.join(map(str, seeds))} | {np.mean(values):.3f} | {min(values):.3f} | "
              f"{max(values):.3f} |")


if __name__ == "__main__":
    main()
