"""The U-Net shared by every refinement network of the model, with optional LSKA in its deepest levels.

One architecture serves three roles (fastMRI's ``Unet`` and Feature-Image VarNet's ``Unet2d`` are the same
network with different output heads):
- inside :class:`~utils.model.norm_unet.NormUnet` for the sensitivity model and the image cascades
  (``norm_act_output=False``: a plain 1x1 output convolution with bias, as in fastMRI);
- as the feature UNet of the feature blocks (``norm_act_output=True``: 1x1 convolution -> InstanceNorm ->
  LeakyReLU, the ``Unet2d`` convention of Feature-Image VarNet);
- as the LSKA-UNet of stage 1 (``lska_k_size`` set): the encoder blocks of the two deepest levels and the
  bottleneck become :class:`~utils.model.lska.LSKAConvBlock`.

Down-sampling is 2x2 average pooling, up-sampling a 2x2 transposed convolution. Inputs of any size are padded
to a multiple of ``2 ** num_pools`` and cropped back, in one of two ways (``padding``):
- ``"zero_centred"``: zeros about the centre, fastMRI's NormUnet (which pads outside its U-Net; the result
  is the same);
- ``"reflect"``: reflection at the bottom and right, the feature UNet (``Unet2d``) of Feature-Image VarNet
  and of the 2025 entry; built from ``flip`` and ``cat`` (:func:`reflect_pad_bottom_right`), equal to
  ``F.pad(..., mode="reflect")``, whose CUDA backward is not deterministic.
Either way an axis shorter than two multiples is then zero-padded about the centre up to two, so the
bottleneck keeps 2x2 pixels (InstanceNorm cannot normalise one); the challenge's sizes never need this.

A channels-last input (``x.contiguous(memory_format=torch.channels_last)``) stays channels-last through the
whole network: oneDNN's CPU convolutions at the 18-36 channels of the full-resolution levels run about twice
as fast on it, and :class:`InstanceNorm2d` normalises it in place of ``nn.InstanceNorm2d``, which would copy
it to channels-first and back around every normalisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.model.lska import LSKAConvBlock

__all__ = [
    "PADDINGS",
    "ConvBlock",
    "InstanceNorm2d",
    "TransposeConvBlock",
    "Unet",
    "pad_to_multiple",
    "reflect_pad_bottom_right",
    "unpad",
]


PADDINGS = ("reflect", "zero_centred")


def _pixel_rows(x: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(B, C, H, W)`` -> the ``(B, H * W, C)`` view of the same memory (one row per pixel)."""
    batch, chans, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, chans)


def _column_mean(rows: torch.Tensor) -> torch.Tensor:
    """Mean over the pixels of :func:`_pixel_rows` ``(B, P, C)`` -> ``(B, 1, C)``.

    Where C is not a multiple of 8 (the 18 and 36 channels of the image cascades), summed first over
    ``(B, P / k, k * C)`` rows, then over the k groups: the CPU reduction over P runs about twice as fast over
    16 x 18 contiguous columns as over 18 (measured; no faster for multiples of 8). Still a cascaded
    summation, so as accurate.
    """
    batch, pixels, chans = rows.shape
    group = next(k for k in (16, 8, 4, 2, 1) if pixels % k == 0) if chans % 8 else 1
    if group == 1:
        return rows.mean(dim=1, keepdim=True)
    return rows.reshape(batch, pixels // group, group * chans).sum(dim=1).view(batch, group, chans).sum(
        dim=1, keepdim=True) / pixels


def _channels_last_instance_norm(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalised x, rstd, shift) of a channels-last ``(B, C, H, W)``: ``normalised = x * rstd + shift``.

    Statistics in at least float32, in two passes (mean, then the mean square about it); the squares and, when
    the dtypes agree, the output reuse the one buffer of centred values (three passes over the image fewer to
    allocate and fault in).
    """
    batch, chans = x.shape[:2]
    x_float = x.to(torch.promote_types(x.dtype, torch.float32))
    mean = _column_mean(_pixel_rows(x_float)).view(batch, chans, 1, 1)
    centred = x_float - mean  # a new channels-last tensor
    rstd = torch.rsqrt(_column_mean(_pixel_rows(centred.mul_(centred))).view(batch, chans, 1, 1) + eps)
    shift = -mean * rstd
    out = centred if centred.dtype == x.dtype else None
    return torch.addcmul(shift.to(x.dtype), x, rstd.to(x.dtype), out=out), rstd, shift


class _ChannelsLastInstanceNorm(torch.autograd.Function):
    """``F.instance_norm(x)`` (no affine) of a channels-last ``(B, C, H, W)``, returned channels-last.

    Statistics are column reductions of :func:`_pixel_rows` (:func:`_channels_last_instance_norm`: as accurate
    as ``torch.var_mean`` and several times faster on these rows). The backward is the usual
    ``rstd * (g - mean(g) - y * mean(g * y))`` with ``y`` recomputed from ``x`` rather than saved, because the
    ``LeakyReLU(inplace=True)`` that follows overwrites the output.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        normalised, rstd, shift = _channels_last_instance_norm(x, eps)
        ctx.save_for_backward(x, rstd, shift)
        return normalised  # a new tensor, channels-last like x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, rstd, shift = ctx.saved_tensors
        batch, chans = x.shape[:2]
        rstd, shift = rstd.to(x.dtype), shift.to(x.dtype)
        normalised = torch.addcmul(shift, x, rstd)
        mean_grad = _column_mean(_pixel_rows(grad)).view(batch, chans, 1, 1)
        mean_grad_normalised = _column_mean(_pixel_rows(grad * normalised)).view(batch, chans, 1, 1)
        # rstd * (grad - mean_grad - normalised * mean_grad_normalised) in two passes over the image
        offset = torch.addcmul(-mean_grad * rstd, normalised, -mean_grad_normalised * rstd)
        return torch.addcmul(offset, grad, rstd), None


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(chans)`` (no affine, no running statistics) that keeps a channels-last input so.

    Same state dict (none) and, to float32 rounding, the same values; channels-first inputs take
    ``nn.InstanceNorm2d``'s own path unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, C, H, W)`` -> ``(B, C, H, W)`` in the same memory format."""
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            if not torch.is_grad_enabled():  # inference: no autograd node, nothing saved
                return _channels_last_instance_norm(x, self.eps)[0]
            return _ChannelsLastInstanceNorm.apply(x, self.eps)
        return super().forward(x)


def reflect_pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """``F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")`` for ``pad < size``, with a deterministic backward."""
    if pad_h:
        height = x.shape[-2]
        x = torch.cat([x, x[..., height - 1 - pad_h : height - 1, :].flip(-2)], dim=-2)
    if pad_w:
        width = x.shape[-1]
        x = torch.cat([x, x[..., width - 1 - pad_w : width - 1].flip(-1)], dim=-1)
    return x


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "zero_centred"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``(..., H, W)`` to multiples of ``multiple`` (see the module doc), keeping a channels-last ``x`` so;
    returns the padded tensor and ``(top, left, H, W)``."""
    if mode not in PADDINGS:
        raise ValueError(f"U-Net padding must be one of {PADDINGS}, got {mode!r}")
    height, width = x.shape[-2:]
    reflect_h, reflect_w = -height % multiple, -width % multiple
    if mode == "reflect" and (reflect_h or reflect_w) and reflect_h < height and reflect_w < width:
        x = reflect_pad_bottom_right(x, reflect_h, reflect_w)
    padded_h, padded_w = x.shape[-2:]
    pad_h = max(-padded_h % multiple, 2 * multiple - padded_h)
    pad_w = max(-padded_w % multiple, 2 * multiple - padded_w)
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        x = F.pad(x, (left, pad_w - left, top, pad_h - top))
        if channels_last:  # F.pad may return channels-first
            x = x.contiguous(memory_format=torch.channels_last)
    return x, (top, left, height, width)


def unpad(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: crop ``(..., H', W')`` back to the box it returned."""
    top, left, height, width = box
    return x[..., top : top + height, left : left + width]


class ConvBlock(nn.Module):
    """[Conv kxk -> InstanceNorm -> LeakyReLU(0.2)] x 2 (k = 3 in the U-Nets, 5 in the feature image conv)."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=kernel_size, padding=padding, bias=False),
            InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(out_chans, out_chans, kernel_size=kernel_size, padding=padding, bias=False),
            InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)``."""
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x up-sampling: ConvTranspose 2x2 stride 2 -> InstanceNorm -> LeakyReLU(0.2)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, in_chans, H, W)`` -> ``(B, out_chans, 2H, 2W)``."""
        return self.layers(x)


class Unet(nn.Module):
    """U-Net with ``num_pools`` levels; level ``d`` has ``chans * 2**d`` channels, the bottleneck twice the last."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        chans: int,
        num_pools: int,
        lska_k_size: int | None = None,
        norm_act_output: bool = False,
        padding: str = "zero_centred",
        lska_gate: str = "bounded",
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"U-Net padding must be one of {PADDINGS}, got {padding!r}")
        self.num_pools = num_pools
        self.padding = padding

        def encoder_block(depth: int, block_in: int, block_out: int) -> nn.Module:
            # LSKA where the receptive field is already large: the two deepest levels and the bottleneck
            if lska_k_size is not None and depth >= num_pools - 2:
                return LSKAConvBlock(block_in, block_out, lska_k_size, lska_gate)
            return ConvBlock(block_in, block_out)

        widths = [chans * 2**depth for depth in range(num_pools + 1)]
        self.down_blocks = nn.ModuleList(
            encoder_block(depth, in_chans if depth == 0 else widths[depth - 1], widths[depth])
            for depth in range(num_pools)
        )
        self.bottleneck = encoder_block(num_pools, widths[num_pools - 1], widths[num_pools])
        self.up_samplers = nn.ModuleList(
            TransposeConvBlock(widths[depth + 1], widths[depth]) for depth in reversed(range(num_pools))
        )
        self.up_blocks = nn.ModuleList(
            ConvBlock(2 * widths[depth], widths[depth]) for depth in reversed(range(num_pools))
        )
        head: list[nn.Module] = [nn.Conv2d(chans, out_chans, kernel_size=1, bias=not norm_act_output)]
        if norm_act_output:
            head += [InstanceNorm2d(out_chans), nn.LeakyReLU(negative_slope=0.2, inplace=True)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, in_chans, H, W)``, any H and W -> ``(B, out_chans, H, W)``."""
        x, box = pad_to_multiple(x, 2**self.num_pools, self.padding)
        skips = []
        for block in self.down_blocks:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        x = self.bottleneck(x)
        for up_sample, block in zip(self.up_samplers, self.up_blocks):
            x = block(torch.cat([up_sample(x), skips.pop()], dim=1))
        return unpad(self.head(x), box)
