"""Train the high-precision parsing model (Inception + ASPP) and export parsing_hp.onnx.

    python -m optkit.reference_models.parsing_hp.train [--iters 2400]

Same data and crops as the real-time model (see parsing/train.py); crops are 160x208 so that the
stride-16 map during training (10x13) is, like the deployed 15x20 one, smaller than the atrous rates.
"""

from __future__ import annotations

from pathlib import Path

from ..parsing.train import train_segmenter
from ..people import PARTS
from ..training import arguments, seed_everything
from .model import ParsingHPNet

HERE = Path(__file__).parent
TRAIN_SEED = 5


def main() -> None:
    args = arguments(2400, 12, HERE / "parsing_hp.onnx")
    seed_everything(args.seed)
    train_segmenter("parsing_hp", ParsingHPNet(len(PARTS)), args, (160, 208), TRAIN_SEED)


if __name__ == "__main__":
    main()
