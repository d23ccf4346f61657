"""Train-on-synthetic / test-on-real (TSTR) with the demo digits.

Trains the same small CNN twice: on synthetic digits only (a version of
`digits-synth`) and on real digits (the training split of `digits-real`),
and tests both on the same held-out real digits (file index % 5 == 0, the
split the embedded models never trained their evaluation on). The result is
logged to MLflow with both dataset versions as inputs.

    python examples/train_classifier.py [--synthetic digits-synth] [--real digits-real] [--epochs 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn as nn
import torch.nn.functional as F

from catalog import Catalog, open_version
from flows.settings import configure
from flows.tracking import Tracker


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def tensors(version, held_out: bool | None = None):
    """Stack a version's kept rows; for real rows, split by the file index."""
    table = version.table(["image", "label", "source_path"])
    ds = version.to_torch()
    keep = range(len(ds))
    if held_out is not None:
        paths = table["source_path"].to_pylist()
        keep = [i for i, p in enumerate(paths) if (int(Path(p).stem) % 5 == 0) == held_out]
    xs, ys = zip(*[(ds[i][0], ds[i][1]) for i in keep])
    return torch.stack(xs), torch.tensor(ys)


def fit(x, y, epochs: int, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            # light shift augmentation so neither source wins by memorising pixels
            xb = torch.roll(x[idx], shifts=tuple(torch.randint(-1, 2, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--synthetic", default="digits-synth")
    ap.add_argument("--real", default="digits-real")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = configure(args.data_dir)
    cat = Catalog(paths.catalog)
    synth, real = open_version(cat, args.synthetic), open_version(cat, args.real)
    x_syn, y_syn = tensors(synth)
    x_real, y_real = tensors(real, held_out=False)
    x_test, y_test = tensors(real, held_out=True)
    tstr = accuracy(fit(x_syn, y_syn, args.epochs), x_test, y_test)
    trtr = accuracy(fit(x_real, y_real, args.epochs), x_test, y_test)
    print(f"train on {synth.ref} ({len(y_syn)} synthetic) -> test on {len(y_test)} held-out real: {tstr:.4f}")
    print(f"train on {real.ref} ({len(y_real)} real)      -> test on {len(y_test)} held-out real: {trtr:.4f}")
    tracker = Tracker(paths.tracking_uri, paths.artifact_root, experiment="synthgen-training")
    tracker.start_run("tstr-digits", {"synthetic": synth.ref, "real": real.ref, "epochs": args.epochs})
    tracker.log_metrics({"tstr_accuracy": tstr, "trtr_accuracy": trtr, "synthetic_rows": len(y_syn),
                         "real_train_rows": len(y_real), "test_rows": len(y_test)})
    for v, ctx in ((synth, "training"), (real, "evaluation")):
        tracker.log_dataset(v.ref, cat.manifest_sha256(v.name, v.version),
                            str(cat.manifest_path(v.name, v.version)), ctx)
    tracker.end()
    print(f"logged to MLflow run {tracker.run_id} ({tracker.tracking_uri})")


if __name__ == "__main__":
    main()
