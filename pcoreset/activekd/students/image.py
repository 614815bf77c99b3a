"""Image students (``smallcnn``, ``resnet18``, ``mobilenet_v2``, and the
``-imagenet`` variants that start from torchvision's ImageNet weights). The
teacher sees CLIP preprocessing; the student sees ImageNet-normalised images,
with random crop + flip when training. torchvision is imported at the point of
use."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InvalidInputError
from .._deps import require
from ..config import RunConfig
from ..datasets.base import Dataset
from ..datasets.images import load_image, need_images
from .base import DualHeadStudent

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    """Three stride-2 conv-BN-ReLU blocks (width, 2*width, 4*width channels) and
    global average pooling: a cheap student for quick CPU runs on small images."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x):
        return self.net(x)


def _torchvision_backbone(arch: str, pretrained: bool) -> Tuple[nn.Module, int]:
    tv = require("torchvision", f"student={arch!r}")
    if arch == "resnet18":
        weights = tv.models.ResNet18_Weights.IMAGENET1K_V1 if pretrained else None
        net = tv.models.resnet18(weights=weights)
        dim = net.fc.in_features
        net.fc = nn.Identity()
    elif arch == "mobilenet_v2":
        weights = tv.models.MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None
        net = tv.models.mobilenet_v2(weights=weights)
        dim = net.last_channel
        net.classifier = nn.Identity()
    else:
        raise InvalidInputError(f"student={arch!r} is not a known torchvision backbone")
    return net, dim


class ImageStudent(DualHeadStudent):
    """Dual-head student on images: ImageNet-normalised `image_size` px inputs, random
    crop (pad size/8, reflect) + horizontal flip when training.

    Images are decoded once (resize short side, centre crop) and kept as uint8 when
    they fit in `max_cache_bytes`; otherwise decoded per batch."""

    eval_batch_size = 256

    def __init__(self, cfg: RunConfig, ds: Dataset, arch: str, pretrained: bool = False,
                 image_size: Optional[int] = None, max_cache_bytes: int = 4 << 30) -> None:
        super().__init__(cfg, ds)
        need_images(ds, f"student={cfg.student!r}")
        self.arch, self.pretrained = arch, bool(pretrained)
        self.image_size = int(image_size or getattr(cfg, "image_size", 0) or (32 if arch == "smallcnn" else 224))
        self._cache_all = len(ds) * 3 * self.image_size ** 2 <= max_cache_bytes
        self._pixels: Optional[torch.Tensor] = None
        self._init_state = None
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255

    def make_backbone(self):
        if self.arch == "smallcnn":
            net = SmallCNN()
            return net, net.out_dim
        net, dim = _torchvision_backbone(self.arch, self.pretrained and self._init_state is None)
        if self.pretrained:  # load the downloaded weights once, reuse them every round
            if self._init_state is None:
                self._init_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                net.load_state_dict(self._init_state)
        return net, dim

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        tv = require("torchvision", f"student={self.cfg.student!r}")
        tf = tv.transforms
        prep = tf.Compose([tf.Resize(self.image_size), tf.CenterCrop(self.image_size), tf.PILToTensor()])
        if len(rows) == 0:
            return torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.stack([prep(load_image(self.ds.items[r])) for r in rows])

    def _uint8(self, rows: np.ndarray) -> torch.Tensor:
        if not self._cache_all:
            return self._decode(rows)
        if self._pixels is None:
            self._pixels = self._decode(np.arange(len(self.ds)))
        return self._pixels[torch.as_tensor(rows, dtype=torch.long)]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        pad = max(1, self.image_size // 8)
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        flip = (torch.rand(n) < 0.5).tolist()
        out = torch.empty_like(x)
        for i in range(n):
            crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
            out[i] = crop.flip(-1) if flip[i] else crop
        return out

    def inputs(self, rows, train):
        x = self._uint8(np.asarray(rows, dtype=np.int64)).float()
        if train and len(x):
            x = self._augment(x)
        return ((x - self._mean) / self._std,)

    def predict(self, rows, batch_size: int = 4096):
        return super().predict(rows, batch_size=min(batch_size, self.eval_batch_size))


def _factory(arch: str, pretrained: bool):
    def factory(cfg: RunConfig, ds: Dataset) -> ImageStudent:
        return ImageStudent(cfg, ds, arch, pretrained=pretrained or bool(getattr(cfg, "student_pretrained", False)))

    factory.__name__ = f"{arch}{'-imagenet' if pretrained else ''}"
    return factory


smallcnn = _factory("smallcnn", False)
resnet18 = _factory("resnet18", False)
mobilenet_v2 = _factory("mobilenet_v2", False)
resnet18_imagenet = _factory("resnet18", True)
mobilenet_v2_imagenet = _factory("mobilenet_v2", True)
