"""Models torch.fx cannot trace whole, built small with random weights (nothing downloaded).

Each entry builds a model in eval mode and the inputs it takes, as ``fxmaps.Inputs``:
keyword arguments for transformers, a list of images for detection, two images and an
int for optical flow, an int timestep for diffusion, and students' own code with the
patterns symbolic tracing cannot follow (a loop over a ModuleList, a dict output, an
optional input, branches on shapes and values, an LSTM, activation checkpointing).
transformers and diffusers are test extras; their entries say which they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import torchvision
from torch import nn

import fxmaps

__all__ = ["CORPUS", "AnyModel", "is_layer"]

Built = tuple[nn.Module, fxmaps.Inputs]


@dataclass(frozen=True)
class AnyModel:
    """One entry: its family, name, builder, and whether the default test run takes it."""

    family: str
    name: str
    build: Callable[[], Built]
    sample: bool = False
    requires: str | None = None


def is_layer(module: nn.Module) -> bool:
    """A conv or linear layer: the calls every graph must show (transformers' ``Conv1D``
    is GPT-2's linear layer, its weight transposed)."""
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return True
    return any(
        c.__name__ == "Conv1D" and "transformers" in c.__module__ for c in type(module).__mro__
    )


def _seeded(build: Callable[[], Built]) -> Callable[[], Built]:
    def seeded() -> Built:
        torch.manual_seed(0)
        model, inputs = build()
        return model.eval(), inputs

    seeded.__name__ = build.__name__
    return seeded


def _ids() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _pixels(side: int = 32) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    }


# -- transformers --------------------------------------------------------------------------------


def bert() -> Built:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    return BertModel(config), fxmaps.Inputs(kwargs=_ids())


def gpt2() -> Built:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return GPT2Model(config), fxmaps.Inputs(kwargs={**_ids(), "use_cache": False})


def t5_encoder() -> Built:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    return T5EncoderModel(config), fxmaps.Inputs(kwargs=_ids())


def vit() -> Built:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    return ViTModel(config), fxmaps.Inputs(kwargs=_pixels())


def clip_vision() -> Built:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, projection_dim=32,
    )  # fmt: skip
    return CLIPVisionModel(config), fxmaps.Inputs(kwargs=_pixels())


def swin() -> Built:
    from transformers import SwinConfig, SwinModel

    config = SwinConfig(
        image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
        window_size=4, mlp_ratio=2.0,
    )  # fmt: skip
    return SwinModel(config), fxmaps.Inputs(kwargs=_pixels())


def convnext() -> Built:
    from transformers import ConvNextConfig, ConvNextModel

    config = ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)
    return ConvNextModel(config), fxmaps.Inputs(kwargs=_pixels())


def wav2vec2() -> Built:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    audio = torch.randn(2, 1600, generator=torch.Generator().manual_seed(1))
    return Wav2Vec2Model(config), fxmaps.Inputs(kwargs={"input_values": audio})


def llama() -> Built:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaModel(config), fxmaps.Inputs(kwargs={**_ids(), "use_cache": False})


# -- diffusers -----------------------------------------------------------------------------------


def unet2d() -> Built:
    from diffusers import UNet2DModel

    model = UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8,
    )  # fmt: skip
    sample = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, fxmaps.Inputs((sample, 10))


def autoencoder_kl() -> Built:
    from diffusers import AutoencoderKL

    model = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4, norm_num_groups=8, layers_per_block=1, sample_size=32,
    )  # fmt: skip
    sample = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, fxmaps.Inputs((sample,), {"sample_posterior": False})


# -- torchvision ---------------------------------------------------------------------------------

_SMALL = {"min_size": 128, "max_size": 160}
_RCNN = {**_SMALL, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50}


def _images(count: int = 2) -> fxmaps.Inputs:
    generator = torch.Generator().manual_seed(1)
    return fxmaps.Inputs(([torch.rand(3, 128, 160, generator=generator) for _ in range(count)],))


def _detector(name: str, count: int = 2, **options: Any) -> Callable[[], Built]:
    def build() -> Built:
        model = torchvision.models.get_model(
            name, weights=None, weights_backbone=None, detections_per_img=10, **options
        )
        return model, _images(count)

    build.__name__ = name
    return build


def _segmenter(name: str) -> Callable[[], Built]:
    def build() -> Built:
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
        return model, fxmaps.Inputs((torch.randn(1, 3, 128, 128),))

    build.__name__ = name
    return build


def raft_small() -> Built:
    generator = torch.Generator().manual_seed(1)
    first, second = (torch.rand(1, 3, 128, 128, generator=generator) for _ in range(2))
    model = torchvision.models.optical_flow.raft_small(weights=None)
    return model, fxmaps.Inputs((first, second), {"num_flow_updates": 3})


def r3d_18() -> Built:
    return torchvision.models.video.r3d_18(weights=None), fxmaps.Inputs(
        (torch.randn(1, 3, 4, 48, 48),)
    )


def s3d() -> Built:
    model = torchvision.models.video.s3d(weights=None)
    model.avgpool = nn.AdaptiveAvgPool3d(1)  # its fixed pool needs 224×224 clips
    return model, fxmaps.Inputs((torch.randn(1, 3, 8, 64, 64),))


# -- students' own code --------------------------------------------------------------------------


class LoopedBlocks(nn.Module):
    """A ModuleList looped over in forward, and one block called a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True)) for _ in range(3)
        )
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x), inplace=True)
        for block in self.blocks:
            x = x + block(x)
        x = self.blocks[0](x)
        return self.head(x.mean((2, 3)))


class DictOutput(nn.Module):
    """Returns a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.classes = nn.Linear(8, 5)
        self.boxes = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.conv(x)).mean((2, 3))
        return {"logits": self.classes(features), "box": self.boxes(features), "features": features}


class OptionalMask(nn.Module):
    """Two inputs, the second optional."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mask_conv = nn.Conv2d(1, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.conv(x)
        if mask is not None:
            y = y * torch.sigmoid(self.mask_conv(mask))
        return self.fc(y.mean((2, 3)))


class ShapeBranch(nn.Module):
    """``if x.shape[-1] > 100``: a branch on the input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 100:
            x = self.down(x)
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


class ValueBranch(nn.Module):
    """``if y.mean() > 0``: a branch on the values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.positive = nn.Conv2d(8, 8, 1)
        self.negative = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = self.positive(y) if y.mean() > 0 else self.negative(y)
        return self.fc(torch.relu(y).mean((2, 3)))


class LSTMClassifier(nn.Module):
    """Embedding, LSTM, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(ids))
        return self.fc(out[:, -1])


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class Checkpointed(nn.Module):
    """Activation checkpointing in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.first = Residual(8)
        self.second = Residual(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.utils.checkpoint.checkpoint(self.first, x, use_reentrant=False)
        x = torch.utils.checkpoint.checkpoint(self.second, x, use_reentrant=False)
        return self.fc(x.mean((2, 3)))


def _student(cls: type[nn.Module], *args: torch.Tensor) -> Callable[[], Built]:
    def build() -> Built:
        return cls(), fxmaps.Inputs(args)

    build.__name__ = cls.__name__
    return build


def _x(side: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))


def _tv(
    family: str,
    name: str,
    images: int = 0,
    options: dict[str, Any] | None = None,
    *,
    sample: bool = False,
) -> AnyModel:
    """A torchvision detector (given how many images and which options) or segmenter."""
    if family == "detection":
        return AnyModel(family, name, _seeded(_detector(name, images, **(options or {}))), sample)
    return AnyModel(family, name, _seeded(_segmenter(name)), sample)


_T, _D = "transformers", "diffusers"
CORPUS: tuple[AnyModel, ...] = (
    AnyModel(_T, "bert", _seeded(bert), sample=True, requires=_T),
    AnyModel(_T, "gpt2", _seeded(gpt2), requires=_T),
    AnyModel(_T, "t5_encoder", _seeded(t5_encoder), requires=_T),
    AnyModel(_T, "vit", _seeded(vit), requires=_T),
    AnyModel(_T, "clip_vision", _seeded(clip_vision), requires=_T),
    AnyModel(_T, "swin", _seeded(swin), requires=_T),
    AnyModel(_T, "convnext", _seeded(convnext), requires=_T),
    AnyModel(_T, "wav2vec2", _seeded(wav2vec2), requires=_T),
    AnyModel(_T, "llama", _seeded(llama), sample=True, requires=_T),
    AnyModel(_D, "unet2d", _seeded(unet2d), sample=True, requires=_D),
    AnyModel(_D, "autoencoder_kl", _seeded(autoencoder_kl), requires=_D),
    _tv("detection", "fasterrcnn_mobilenet_v3_large_320_fpn", 2, _RCNN, sample=True),
    _tv("detection", "retinanet_resnet50_fpn", 1, _SMALL),
    _tv("detection", "ssdlite320_mobilenet_v3_large", 2, {}),
    _tv("detection", "fcos_resnet50_fpn", 1, _SMALL),
    _tv("detection", "maskrcnn_resnet50_fpn", 1, _RCNN),
    _tv("detection", "keypointrcnn_resnet50_fpn", 1, _RCNN),
    _tv("segmentation", "deeplabv3_mobilenet_v3_large"),
    _tv("segmentation", "lraspp_mobilenet_v3_large"),
    AnyModel("optical flow", "raft_small", _seeded(raft_small), sample=True),
    AnyModel("video", "r3d_18", _seeded(r3d_18)),
    AnyModel("video", "s3d", _seeded(s3d)),
    AnyModel("student", "looped_blocks", _seeded(_student(LoopedBlocks, _x())), sample=True),
    AnyModel("student", "dict_output", _seeded(_student(DictOutput, _x())), sample=True),
    AnyModel(
        "student",
        "optional_mask",
        _seeded(_student(OptionalMask, _x(), torch.rand(2, 1, 32, 32))),
        sample=True,
    ),
    AnyModel("student", "optional_mask_not_given", _seeded(_student(OptionalMask, _x()))),
    AnyModel("student", "shape_branch", _seeded(_student(ShapeBranch, _x(128))), sample=True),
    AnyModel("student", "value_branch", _seeded(_student(ValueBranch, _x())), sample=True),
    AnyModel(
        "student",
        "lstm_classifier",
        _seeded(_student(LSTMClassifier, torch.randint(0, 50, (2, 12)))),
        sample=True,
    ),
    AnyModel("student", "checkpointed", _seeded(_student(Checkpointed, _x())), sample=True),
)
