"""The face-fusion demo: landmarks from the face model on two generated faces, then fusion.fuse.
Writes one picture: source | target | fused, landmarks drawn on the first two."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import draw
from ..faces import CROP as SIZE
from ..faces import sample
from ..task import Runner, image_input
from .fusion import fuse
from .task import landmarks_from_output


def fusion_demo(run: Runner, out: Path, source_index: int = 3, target_index: int = 11, seed: int = 77) -> dict:
    src, tgt = sample(seed, source_index, SIZE), sample(seed, target_index, SIZE)
    src_lm = landmarks_from_output(run({"image": image_input(src.image)})["landmarks"])[0]
    tgt_lm = landmarks_from_output(run({"image": image_input(tgt.image)})["landmarks"])[0]
    fused = fuse(src.image, src_lm, tgt.image, tgt_lm)
    tiles = [draw.draw_points(draw.to_uint8(src.image), src_lm, (0, 255, 0), 0),
             draw.draw_points(draw.to_uint8(tgt.image), tgt_lm, (0, 255, 0), 0), draw.to_uint8(fused)]
    picture = draw.grid([np.kron(t, np.ones((2, 2, 1), np.uint8)) for t in tiles], 3)
    from optkit.core.safe_output import atomic_file

    with atomic_file(out) as tmp:
        tmp.write_bytes(draw.encode_png(picture))
    err_src = float(np.linalg.norm(src_lm - src.landmarks, axis=1).mean())
    err_tgt = float(np.linalg.norm(tgt_lm - tgt.landmarks, axis=1).mean())
    return {"picture": str(out), "landmark_error_px": {"source": round(err_src, 2), "target": round(err_tgt, 2)}}
