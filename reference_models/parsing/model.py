"""Real-time human parsing: a light encoder that reaches stride 4 in two convs (fast down-sampling),
MobileNetV2 blocks to stride 16, and a UNet-style decoder that fuses skips by concatenation with
residual refinement blocks. Input 1x3x240x320 in [0,1]; output 1x6x240x320 class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training import InvertedResidual, conv_bn_act


class FuseBlock(nn.Module):
    """Upsample, concatenate the skip, 1x1 fuse, then a residual 3x3 depthwise-separable refinement."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.fuse = conv_bn_act(cin + cskip, cout, 1)
        self.refine = nn.Sequential(conv_bn_act(cout, cout, 3, groups=cout), conv_bn_act(cout, cout, 1, act=False))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([x, skip], 1))
        return F.relu(x + self.refine(x))


class ParsingNet(nn.Module):
    def __init__(self, classes: int = 6, width: float = 1.0):
        super().__init__()
        c = [int(v * width) for v in (16, 24, 40, 80, 112)]
        self.stem = conv_bn_act(3, c[0], 3, 2)                                         # /2
        self.down4 = nn.Sequential(conv_bn_act(c[0], c[0], 3, 2, groups=c[0]), conv_bn_act(c[0], c[1], 1))  # /4
        self.down8 = nn.Sequential(InvertedResidual(c[1], c[2], 2, 4), InvertedResidual(c[2], c[2], 1, 4))  # /8
        self.down16 = nn.Sequential(InvertedResidual(c[2], c[3], 2, 4), InvertedResidual(c[3], c[3], 1, 4),
                                    InvertedResidual(c[3], c[4], 1, 4, dilation=2),
                                    InvertedResidual(c[4], c[4], 1, 4, dilation=4))     # /16, wide context
        self.up8 = FuseBlock(c[4], c[2], 64)
        self.up4 = FuseBlock(64, c[1], 48)
        self.up2 = FuseBlock(48, c[0], 32)
        self.head = nn.Conv2d(32, classes, 1)

    def forward(self, x):
        s2 = self.stem(x)
        s4 = self.down4(s2)
        s8 = self.down8(s4)
        s16 = self.down16(s8)
        y = self.up2(self.up4(self.up8(s16, s8), s4), s2)
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
