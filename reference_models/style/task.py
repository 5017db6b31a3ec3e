"""Style transfer: content scenes at 256x256 with brush settings 0, 0.5 and 1. Metric: the style loss
(Gram distance in the random-filter net) to the exemplar painted at the matching stroke size, lower is
better, beside the same loss for the unstylised content (what 'no learning' scores). When the model
evaluated is not the committed one, PSNR and SSIM against the committed fp32 model's output are
reported too (what a quantized or pruned variant must keep)."""

from __future__ import annotations

import functools

import numpy as np

from ..metrics import psnr, ssim
from ..style_data import content, exemplar
from ..task import EVAL_SEED, Evaluation, Task, image_input
from .features import features, gram, style_distance

BRUSHES = (0.0, 0.5, 1.0)
SIZE = 256


class StyleTask(Task):
    name = "style"
    description = "controllable style transfer (stroke pyramid, brush input), dynamic HxW, evaluated at 256x256"
    input_shape = (1, 3, SIZE, SIZE)
    metric_name = "style-loss"
    higher_is_better = False
    eval_size = 24
    size_budget_mb = 0.99
    seed_note = "production model: 0.99 MB, 1024x1024 in 0.09 s on a Quadro M6000; no accuracy published (seed-facts)"
    data = "style_data.py: textured content scenes; stroke exemplars whose stroke width follows the brush"
    compile_shapes = f"image:1x3x{SIZE}x{SIZE}"
    reference_outputs = None  # set by evaluate() when comparing against the fp32 model

    @functools.cached_property
    def _targets(self):
        return {b: [gram(f) for f in features(exemplar(SIZE, b).transpose(2, 0, 1))] for b in BRUSHES}

    def sample(self, index, seed=EVAL_SEED):
        brush = BRUSHES[index % len(BRUSHES)]
        image = content(seed, index, SIZE)
        return {"image": image_input(image), "brush": np.array([[brush]], np.float32)}, (brush, image)

    def score(self, outputs, labels):
        losses, baseline = [], []
        for out, (brush, image) in zip(outputs, labels):
            stylized = out["stylized"][0]
            losses.append(style_distance(stylized, self._targets[brush]))
            baseline.append(style_distance(image.transpose(2, 0, 1), self._targets[brush]))
        details = {"content_style_loss": round(float(np.mean(baseline)), 6),
                   "per_brush": {str(b): round(float(np.mean(losses[i::len(BRUSHES)])), 6)
                                 for i, b in enumerate(BRUSHES)}}
        if self.reference_outputs is not None:
            ref = self.reference_outputs
            details["psnr_vs_fp32"] = round(float(np.mean([psnr(o["stylized"], r["stylized"]) for o, r in zip(outputs, ref)])), 3)
            details["ssim_vs_fp32"] = round(float(np.mean([ssim(o["stylized"][0], r["stylized"][0])
                                                           for o, r in zip(outputs, ref)])), 4)
        return Evaluation(self.name, self.metric_name, float(np.mean(losses)), len(labels), higher_is_better=False,
                          details=details)
