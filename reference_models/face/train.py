"""Train the face landmark model on generated faces and export face.onnx.

    python -m optkit.reference_models.face.train [--iters 2000]

Loss: L1 on landmark coordinates normalised by the image size. Augmentation: horizontal flip with
the 68-point left/right permutation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..faces import CROP as SIZE
from ..faces import LANDMARKS, sample
from ..training import TrainLog, arguments, export_onnx, fit, seed_everything, to_tensor_images
from .model import FaceLandmarkNet

HERE = Path(__file__).parent
TRAIN_SEED = 4

# Horizontal flip permutation for the iBUG 68-point layout.
FLIP = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
                + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def render_dataset(n: int, seed: int):
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    marks = np.zeros((n, LANDMARKS, 2), np.float32)
    for i in range(n):
        s = sample(seed, i, SIZE)
        images[i] = (s.image * 255 + 0.5).astype(np.uint8)
        marks[i] = s.landmarks
    return images, marks


def batches(images, marks, rng, batch: int):
    while True:
        idx = rng.integers(0, len(images), batch)
        x, y = images[idx].copy(), marks[idx].copy()
        flip = rng.random(batch) < 0.5
        x[flip] = x[flip, :, ::-1]
        y[flip] = y[flip][:, FLIP]
        y[flip, :, 0] = SIZE - y[flip, :, 0]
        yield to_tensor_images(x), torch.from_numpy(y.reshape(batch, -1) / SIZE)


def main() -> None:
    args = arguments(2000, 32, HERE / "face.onnx", samples=6000)
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "samples": args.samples, "input": [SIZE, SIZE],
              "optimizer": "AdamW lr 2e-3 one-cycle", "loss": "L1 on normalised coordinates"}
    log = TrainLog("face", args.seed, recipe)
    images, marks = render_dataset(args.samples, TRAIN_SEED + args.seed)
    model = FaceLandmarkNet()
    data = batches(images, marks, np.random.default_rng(args.seed), args.batch)

    def next_loss(it):
        x, y = next(data)
        loss = (model(x) - y).abs().mean()
        return loss

    fit(model, next_loss, args.iters, 2e-3, log)
    export_onnx(model, (torch.zeros(1, 3, SIZE, SIZE),), args.out, ["image"], ["landmarks"])
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


if __name__ == "__main__":
    main()
