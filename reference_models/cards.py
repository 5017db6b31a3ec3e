"""Write a reference model's card: evaluate it on the full evaluation set, record metrics.json, draw
sample pictures with labels and predictions (samples.png), and fill CARD.md from the model's docstring,
its statistics and its training log.

    python -m optkit.reference_models.cards NAME [NAME ...]
"""

from __future__ import annotations

import importlib
import json
import sys
import time

import numpy as np

from . import draw
from .catalog import evaluate, file_stats, get_task, onnx_runner


def _pictures(name: str, count: int = 4) -> np.ndarray:
    """Left: the label drawn on the input; right: the model's prediction drawn the same way."""
    task = get_task(name)
    run = onnx_runner(task.onnx_path)
    tiles = []
    shown, i = 0, -1
    while shown < count:
        i += 1
        feeds, label = task.sample(i)
        if name == "gesture" and len(label[0]) == 0:
            continue  # scenes without hands are in the evaluation, but show nothing here
        shown += 1
        image = feeds[next(iter(feeds))][0].transpose(1, 2, 0)
        out = run(feeds)
        # half resolution keeps the committed pictures small (noisy scenes compress badly)
        tiles.extend(t[::2, ::2] if t.shape[1] >= 256 else t for t in _render(name, image, label, out))
    return draw.grid(tiles, 4)


def _render(name, image, label, out):
    base = draw.to_uint8(image)
    if name in ("parsing", "parsing_hp"):
        return [draw.overlay_labels(image, label), draw.overlay_labels(image, out["logits"][0].argmax(0).astype(np.uint8))]
    if name == "gesture":
        from .gesture.anchors import postprocess

        truth = base
        for b, c in zip(*label):
            truth = draw.draw_box(truth, b, tuple(int(v) for v in draw.PALETTE[c + 1]))
        pred = base
        for b, s, c in zip(*postprocess(out["scores"][0], out["deltas"][0])):
            if s > 0.5:
                pred = draw.draw_box(pred, b, tuple(int(v) for v in draw.PALETTE[c + 1]))
        return [truth, pred]
    if name == "pose":
        from .people import LIMBS
        from .pose.postprocess import group_people

        def skeletons(img, people):
            for p in people:
                for a, b in LIMBS:
                    if p[a, 2] > 0 and p[b, 2] > 0:
                        img = draw.draw_line(img, p[a, :2], p[b, :2])
                img = draw.draw_points(img, [k[:2] for k in p if k[2] > 0])
            return img

        return [skeletons(base, label), skeletons(base, group_people(out["heatmaps"][0], out["pafs"][0])[0])]
    if name == "face":
        from .face.task import landmarks_from_output

        big = lambda im: np.kron(im, np.ones((2, 2, 1), np.uint8))  # noqa: E731
        return [big(draw.draw_points(base, label, (0, 255, 0), 0)),
                big(draw.draw_points(base, landmarks_from_output(out["landmarks"])[0], (255, 0, 0), 0))]
    if name == "style":
        return [base, draw.to_uint8(out["stylized"][0].transpose(1, 2, 0))]
    raise ValueError(name)


def write_card(name: str) -> dict:
    task = get_task(name)
    folder = task.onnx_path.parent
    start = time.time()
    result = evaluate(name)
    eval_seconds = time.time() - start
    (folder / "metrics.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    (folder / "samples.png").write_bytes(draw.encode_png(_pictures(name)))
    stats = file_stats(task.onnx_path)
    log = json.loads((folder / "train_log.json").read_text())
    model_doc = importlib.import_module(f"{__package__}.{name}.model").__doc__.strip()
    direction = "higher is better" if result.higher_is_better else "lower is better"
    size_mb = stats["file_bytes"] / 1e6
    budget = (f"{task.size_budget_mb} MB (seed-facts); this model {size_mb:.3f} MB: "
              f"{'within' if size_mb <= task.size_budget_mb else 'OVER'} budget") if task.size_budget_mb else "none given"
    details = "\n".join(f"- {k}: {v}" for k, v in result.details.items())
    recipe = "\n".join(f"- {k}: {v}" for k, v in log["recipe"].items())
    samples_caption = ("Content (left) and stylized output (right), brush 0, 0.5, 1, 0" if name == "style"
                       else "Evaluation samples: label (left) and prediction (right) of each pair")
    card = f"""# {name}

{task.description}.

## Architecture
{model_doc}

| | |
|---|---|
| input | `{task.input_name}` {'x'.join(map(str, task.input_shape))} float32, RGB in [0, 1] |
| parameters | {stats['params']:,} |
| FLOPs (Conv/Gemm/MatMul, 2 per MAC) | {stats['flops'] / 1e6:.1f} M |
| ONNX file | `{task.onnx_path.name}`, {stats['file_bytes'] / 1e6:.3f} MB, {stats['nodes']} nodes, opset 17 |
| size budget (fp32) | {budget} |

## Data
Generated, never downloaded: {task.data}. Deterministic from a seed
(`optkit.reference_models.{task.data.split(':')[0].replace('.py', '')}`).

## Accuracy (fp32, onnxruntime)
**{result.metric} = {result.value:.4f}** ({direction}) on the full evaluation set of {result.samples} samples
(seed {__import__('optkit.reference_models.task', fromlist=['EVAL_SEED']).EVAL_SEED}, never seen in training;
evaluation took {eval_seconds:.0f} s here).
{details}

For comparison, {task.seed_note}. The data here is synthetic, so the numbers say the network learned its
task, not how it does on photographs.

Reproduce: `optkit models eval {name}`.

## Training
`python -m optkit.reference_models.{name}.train` (seed {log['seed']}), {log['train_seconds'] / 60:.1f} min on
{log['machine']}.
{recipe}

Loss went from {log['loss_curve'][0][1]} (iteration {log['loss_curve'][0][0]}) to {log['loss_curve'][-1][1]}
(iteration {log['loss_curve'][-1][0]}); the full curve is in `train_log.json`.

## Samples
{samples_caption}.

![samples](samples.png)
"""
    if name == "face":
        from .face.demo import fusion_demo

        demo = fusion_demo(onnx_runner(task.onnx_path), folder / "fusion.png")
        card += f"""
## Face fusion
`optkit models fusion-demo -o fusion.png`: landmarks from this model on two generated faces, a
similarity transform (Umeyama) aligning source to target, a bilinear warp, a per-channel lookup table
that matches the source's skin-tone histogram to the target's, and a feathered blend inside the face
hull (`face/fusion.py`, numpy only). Source | target | fused; mean landmark error on these two faces
{demo['landmark_error_px']['source']} and {demo['landmark_error_px']['target']} px.

![fusion](fusion.png)
"""
    (folder / "CARD.md").write_text(card)
    return result.as_dict()


if __name__ == "__main__":
    for model_name in sys.argv[1:]:
        print(json.dumps(write_card(model_name)))
