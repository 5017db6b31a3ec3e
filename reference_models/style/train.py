"""Train the stroke-pyramid style model and export style.onnx (dynamic height and width).

    python -m optkit.reference_models.style.train [--iters 700]

No pretrained network is available here, so the perceptual losses use the fixed random-filter conv net
of features.py: style = Gram statistics of its three layers against the exemplar painted with the
brush size being trained; content = its second layer's features against the content image. Each step
trains one of the three brush centres (0, 0.5, 1), so each branch learns its stroke size and the gate
blends them for values in between.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..style_data import content, exemplar
from ..training import TrainLog, arguments, export_onnx, fit, seed_everything, to_tensor_images
from .features import random_filters
from .model import BRUSH_CENTRES, StrokePyramidNet

HERE = Path(__file__).parent
CROP = 128
TRAIN_SEED = 6
STYLE_WEIGHT, CONTENT_WEIGHT = 1.0, 0.05


class RandomFeatures(torch.nn.Module):
    """Torch twin of features.features (same weights, reflect padding, 2x2 average pooling)."""

    def __init__(self):
        super().__init__()
        self.layers = [(torch.from_numpy(w), torch.from_numpy(b)) for w, b in random_filters()]

    def forward(self, x):
        out = []
        for k, (w, b) in enumerate(self.layers):
            if k:
                x = F.avg_pool2d(x, 2)
            x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, b))
            out.append(x)
        return out


def grams(feats):
    out = []
    for f in feats:
        n, c = f.shape[:2]
        m = f.reshape(n, c, -1)
        out.append(m @ m.transpose(1, 2) / m.shape[-1])
    return out


def main() -> None:
    args = arguments(700, 8, HERE / "style.onnx", samples=1500)
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "crop": [CROP, CROP], "samples": args.samples,
              "optimizer": "Adam lr 2e-3 one-cycle",
              "loss": f"{STYLE_WEIGHT} x Gram(random-filter net, 3 layers) + {CONTENT_WEIGHT} x content(layer 2)"}
    log = TrainLog("style", args.seed, recipe)
    images = np.stack([(content(TRAIN_SEED + args.seed, i, CROP) * 255 + 0.5).astype(np.uint8)
                       for i in range(args.samples)])
    feat = RandomFeatures()
    with torch.no_grad():
        targets = [grams(feat(to_tensor_images(exemplar(256, b)[None]))) for b in BRUSH_CENTRES]
    model = StrokePyramidNet()
    rng = np.random.default_rng(args.seed)

    def next_loss(it):
        k = it % len(BRUSH_CENTRES)
        x = to_tensor_images(images[rng.integers(0, len(images), args.batch)])
        brush = torch.full((args.batch, 1), BRUSH_CENTRES[k])
        y = model(x, brush)
        fy, fx = feat(y), feat(x)
        style = sum(((g - t) ** 2).mean() for g, t in zip(grams(fy), targets[k]))
        cont = ((fy[1] - fx[1]) ** 2).mean()
        loss = STYLE_WEIGHT * style + CONTENT_WEIGHT * cont
        return loss

    fit(model, next_loss, args.iters, 2e-3, log, weight_decay=0)
    # Height and width stay dynamic: fix them per deployment with specialize-input (e.g. 1024x1024).
    export_onnx(model, (torch.zeros(1, 3, 256, 256), torch.zeros(1, 1)), args.out, ["image", "brush"], ["stylized"],
                dynamic_axes={"image": {2: "H", 3: "W"}, "stylized": {2: "H", 3: "W"}})
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


if __name__ == "__main__":
    main()
