"""SparseVD on a network of your own: train it dense, sparsify it from those weights, train on, export.

    python examples/own_model.py                          # Fashion-MNIST, 3 dense + 10 sparse epochs
    python examples/own_model.py --epochs 3 --train-size 2000 --test-size 2000

Plain PyTorch: the only sparsevd calls are sparsify, elbo_loss, KLSchedule, stats and export.
Data: torchvision's FashionMNIST under --data (default: $SPARSEVD_DATA, else ./data).
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import sparsevd
from sparsevd.export import load


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def fashion_mnist(root: str, train_size: int, test_size: int):
    from torchvision.datasets import FashionMNIST
    try:
        train, test = FashionMNIST(root, train=True, download=False), FashionMNIST(root, train=False, download=False)
    except RuntimeError:
        sys.exit(f"error: FashionMNIST not found under {root}; pass --data or set SPARSEVD_DATA")
    as_input = lambda d: d.data.float().div(255).unsqueeze(1)  # noqa: E731  raw pixels in [0, 1]
    return (as_input(train)[:train_size], train.targets[:train_size],
            as_input(test)[:test_size], test.targets[:test_size])


@torch.no_grad()
def test_error(model, x, y) -> float:
    model.eval()
    wrong = sum(int((model(xb).argmax(1) != yb).sum()) for xb, yb in zip(x.split(2000), y.split(2000)))
    return 100.0 * wrong / len(y)


def train_epoch(model, opt, x, y, loss_fn, batch: int = 100):
    model.train()
    for idx in torch.randperm(len(y)).split(batch):
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="SparseVD epochs after sparsify")
    p.add_argument("--dense-epochs", type=int, default=3, help="plain training epochs before sparsify")
    p.add_argument("--train-size", type=int, default=60_000, help="first N training images")
    p.add_argument("--test-size", type=int, default=10_000, help="first N test images")
    p.add_argument("--data", default=os.environ.get("SPARSEVD_DATA", "data"))
    p.add_argument("--out", type=Path, default=Path("outputs/own_model.svd"), help="the exported file")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x, y, x_test, y_test = fashion_mnist(args.data, args.train_size, args.test_size)

    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.dense_epochs):
        train_epoch(model, opt, x, y, F.cross_entropy)
        print(f"dense epoch {epoch + 1}: test error {test_error(model, x_test, y_test):.2f} %")

    sparsevd.sparsify(model)  # same weights, now with a learnable log sigma^2 each
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = sparsevd.KLSchedule(start=0, warmup=max(1, args.epochs // 2))
    for epoch in range(args.epochs):
        beta = schedule(epoch)
        train_epoch(model, opt, x, y, lambda out, t: sparsevd.elbo_loss(out, t, model, len(y), beta))
        err, st = test_error(model, x_test, y_test), sparsevd.stats(model)
        print(f"sparse epoch {epoch + 1}: test error {err:.2f} %  compression {st['compression']:.1f}x  beta {beta:.2f}")

    size = sparsevd.export(model, args.out)
    dense_bytes = 4 * sum(p.numel() for n, p in model.named_parameters() if not n.endswith("log_sigma2"))
    print(f"exported {args.out}: {size:,} bytes ({dense_bytes / size:.0f}x fewer than fp32 dense); "
          f"its test error {test_error(load(args.out), x_test, y_test):.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
