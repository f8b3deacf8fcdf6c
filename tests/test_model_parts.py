"""The model's building blocks: LSKA, the U-Net, ACS detection, sensitivity maps and the image cascade's DC."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from utils.mri.coils import rss_complex
from utils.mri.fft import fft2c
from utils.model.lska import LSKA, LSKA_KERNELS, LSKAAttention, LSKAConvBlock, bounded_gate
from utils.model.norm_unet import NormUnet
from utils.model.sensitivity import SensitivityModel
from utils.model.unet import ConvBlock, Unet, reflect_pad_bottom_right
from utils.model.varnet_block import VarNetBlock


def line_mask(width: int, lines: list[int]) -> torch.Tensor:
    """(1, 1, 1, W, 1) float mask with ones on ``lines``."""
    mask = torch.zeros(1, 1, 1, width, 1)
    mask[0, 0, 0, lines, 0] = 1.0
    return mask


def test_bounded_gate_stays_in_unit_interval_with_finite_gradient():
    attn = torch.tensor([-1e30, -50.0, -1.0, 0.0, 1.0, 50.0, 1e30], requires_grad=True)
    gate = bounded_gate(attn)
    gate.sum().backward()
    assert torch.all((gate >= 0) & (gate <= 1))
    assert gate[3].item() == pytest.approx(0.5)
    assert torch.isfinite(attn.grad).all()


@pytest.mark.parametrize("k_size", sorted(LSKA_KERNELS))
def test_lska_keeps_shape_for_every_kernel_size_of_the_paper(k_size):
    x = torch.randn(2, 4, 13, 22)
    assert LSKA(4, k_size)(x).shape == x.shape
    assert LSKAAttention(4, k_size)(x).shape == x.shape


def test_lska_k7_is_separable_local_then_dilated():
    convs = [m for m in LSKA(4, 7).attention if isinstance(m, nn.Conv2d)]
    assert [tuple(c.kernel_size) for c in convs] == [(1, 3), (3, 1), (1, 3), (3, 1), (1, 1)]
    assert [tuple(c.dilation) for c in convs[:4]] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert [c.groups for c in convs] == [4, 4, 4, 4, 1]


def test_lska_gates_its_input():
    lska = LSKA(3, 7)
    for conv in lska.attention:  # attention map = 0 everywhere -> gate 0.5
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(lska(x), 0.5 * x)


def test_lska_unet_puts_lska_in_the_two_deepest_encoder_levels_and_the_bottleneck():
    unet = Unet(12, 12, chans=4, num_pools=4, lska_k_size=7, norm_act_output=True)
    kinds = [type(block) for block in unet.down_blocks] + [type(unet.bottleneck)]
    assert kinds == [ConvBlock, ConvBlock, LSKAConvBlock, LSKAConvBlock, LSKAConvBlock]
    assert all(isinstance(block, ConvBlock) for block in unet.up_blocks)
    plain = Unet(12, 12, chans=4, num_pools=4, norm_act_output=True)
    assert not any(isinstance(m, LSKAConvBlock) for m in plain.modules())


@pytest.mark.parametrize("height, width", [(16, 16), (17, 31), (5, 3), (40, 23)])
def test_unet_handles_any_size(height, width):
    unet = Unet(2, 3, chans=4, num_pools=3, lska_k_size=7)
    assert unet(torch.randn(2, 2, height, width)).shape == (2, 3, height, width)


def test_norm_unet_is_finite_on_an_all_zero_image():
    image = torch.zeros(1, 1, 8, 8, 2, requires_grad=True)
    out = NormUnet(chans=4, num_pools=2)(image)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(image.grad).all()


def smooth_phantom(coils: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(object support (H, W) bool, true sens maps (C, H, W, 2), coil images (1, C, H, W, 2))."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    support = (x**2 + y**2) < 0.6**2
    maps = []
    for c in range(coils):
        angle = 2 * math.pi * c / coils
        cy, cx = 1.2 * math.sin(angle), 1.2 * math.cos(angle)
        magnitude = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2.0)
        phase = 0.5 * c + 0.3 * x
        maps.append(torch.stack((magnitude * torch.cos(phase), magnitude * torch.sin(phase)), dim=-1))
    sens = torch.stack(maps)
    sens = sens / rss_complex(sens, dim=0)[None, ..., None]
    obj = support.float() * (1.0 + 0.2 * torch.cos(3 * x))
    return support, sens, (sens * obj[None, ..., None])[None]


def test_sensitivity_maps_have_unit_rss_and_follow_the_true_maps_inside_the_object():
    torch.manual_seed(0)
    coils, height, width = 4, 48, 40
    support, true_sens, coil_images = smooth_phantom(coils, height, width)
    mask = line_mask(width, list(range(0, width, 4)) + list(range(14, 26)))
    kspace = fft2c(coil_images) * mask * 1e6

    model = SensitivityModel(chans=4, num_pools=2)
    sens = model(kspace, mask)
    assert sens.shape == kspace.shape
    rss = rss_complex(sens, dim=1)[0]
    torch.testing.assert_close(rss[support], torch.ones_like(rss[support]), atol=1e-4, rtol=0)

    # with the refinement switched off the maps are the normalised ACS coil images, close to the truth
    model.norm_unet = nn.Identity()
    sens = model(kspace, mask)[0]
    inner = support & (rss_complex(true_sens, dim=0) > 0)
    erosion = torch.nn.functional.max_pool2d((~inner).float()[None, None], 9, stride=1, padding=4)[0, 0] == 0
    correlation = (sens[:, erosion] * true_sens[:, erosion]).sum() / erosion.sum()
    assert correlation > 0.97


class ZeroNet(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(image)


def test_image_block_with_zero_refinement_and_unit_dc_weight_returns_measured_lines():
    torch.manual_seed(0)
    coils, height, width = 3, 12, 15
    mask = line_mask(width, [1, 5, 6, 7, 8, 12])
    ref_kspace = torch.randn(1, coils, height, width, 2) * mask
    current = torch.randn(1, coils, height, width, 2)
    sens = torch.randn(1, coils, height, width, 2)
    block = VarNetBlock(NormUnet(chans=4, num_pools=2))
    block.norm_unet = ZeroNet()
    assert block.dc_weight.item() == 1.0
    out = block(current, ref_kspace, mask.bool(), sens)
    sampled = mask.bool().expand_as(out)
    torch.testing.assert_close(out[sampled], ref_kspace[sampled], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[~sampled], current[~sampled])


@pytest.mark.parametrize("centred", [True, False])
def test_image_block_without_autograd_computes_exactly_what_it_computes_with(centred):
    """Without autograd the cascade reuses its buffers (in-place data consistency and coil products)."""
    torch.manual_seed(0)
    coils, height, width = 3, 12, 16
    mask = line_mask(width, [1, 5, 6, 7, 8, 12]).bool()
    ref_kspace = torch.randn(1, coils, height, width, 2) * mask
    current, sens = torch.randn(1, coils, height, width, 2), torch.randn(1, coils, height, width, 2)
    block = VarNetBlock(NormUnet(chans=4, num_pools=2))
    with torch.no_grad():
        block.dc_weight.fill_(0.7)
    expected = block(current, ref_kspace, mask, sens, centred)
    assert expected.requires_grad
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            assert torch.equal(block(current, ref_kspace, mask, sens, centred), expected.detach())


@pytest.mark.parametrize("height, width, pad_h, pad_w", [(5, 7, 3, 0), (6, 9, 0, 8), (20, 17, 15, 15)])
def test_reflect_padding_equals_torch_reflect_pad_in_value_and_gradient(height, width, pad_h, pad_w):
    x = torch.randn(2, 3, height, width, requires_grad=True)
    ours = reflect_pad_bottom_right(x, pad_h, pad_w)
    reference = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    assert torch.equal(ours, reference)
    weights = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(grad_ours, grad_reference)


def test_feature_unet_paddings_differ_only_in_how_they_pad():
    torch.manual_seed(0)
    unet = Unet(4, 4, chans=4, num_pools=2, norm_act_output=True, padding="reflect").eval()
    x = torch.randn(1, 4, 18, 22)
    with torch.no_grad():
        reflected = unet(x)
        unet.padding = "zero_centred"
        zero = unet(x)
        aligned = unet(x[..., :16, :20])  # a multiple of 4 needs no padding: both modes agree
        unet.padding = "reflect"
        torch.testing.assert_close(unet(x[..., :16, :20]), aligned)
    assert reflected.shape == zero.shape == x.shape and not torch.allclose(reflected, zero)
