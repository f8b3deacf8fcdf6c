"""PromptMR+ numerics: checkpointing, float64, autocast, coil chunks, batches, odd sizes, and its small parts."""
from __future__ import annotations

import copy

import pytest
import torch

from utils.model import PromptMRPlus
from utils.model.promptmr.attention import ChannelAttentionBlock
from utils.model.promptmr.crop import entry_crop_or_pad
from utils.model.promptmr.history import momentum_input, next_history
from utils.model.promptmr.prompt_unet import PromptUnet
from utils.model.promptmr.sensitivity import fixed_acs_window
from utils.mri.crop import center_crop_or_pad

TINY = dict(num_cascades=3, n_feat0=4, feature_dim=[4, 6, 8], prompt_dim=[2, 3, 4], sens_n_feat0=2,
            sens_feature_dim=[2, 3, 4], sens_prompt_dim=[1, 2, 2], prompt_size=[4, 2, 2], n_enc_cab=[1, 2, 1],
            n_dec_cab=[1, 1, 1], n_bottleneck_cab=1, n_history=2, ca_reduction=2)


def tiny_model(**overrides) -> PromptMRPlus:
    torch.manual_seed(0)
    return PromptMRPlus(**{**TINY, **overrides})


def masked_input(batch: int, coils: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw-scale (~1e-4) k-space (B, C, H, W, 2) under every 4th line plus 6 centre lines; mask (B, 1, 1, W, 1)."""
    mask = torch.zeros(width)
    mask[::4] = 1
    mask[width // 2 - 3 : width // 2 + 3] = 1
    mask = mask.view(1, 1, 1, width, 1).expand(batch, 1, 1, width, 1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    return 1e-4 * torch.randn(batch, coils, height, width, 2, generator=generator) * mask, mask


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value - reference).abs().max() / reference.abs().max()).item()


def _output_and_grads(model: PromptMRPlus, kspace: torch.Tensor, mask: torch.Tensor):
    model_input = kspace.clone().requires_grad_()
    out = model(model_input, mask)
    (out.square().sum() * 1e8).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return out.detach(), model_input.grad, grads


def test_forward_backward_on_a_small_odd_input_is_finite_and_reaches_every_trained_weight():
    kspace, mask = masked_input(1, 3, 21, 27)
    model = tiny_model()
    out = model(kspace, mask)
    assert out.shape == (1, 384, 384) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        else:  # the fixed prompt components
            assert name.endswith(".components") and parameter.grad is None, name


def test_checkpointing_gives_identical_outputs_and_gradients_and_recomputes():
    kspace, mask = masked_input(1, 3, 20, 22)
    plain = tiny_model(sens_coil_chunk=2).double()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpointing = True
    calls = {"cascade": 0, "sens": 0}

    def count(name):
        return lambda module, args: calls.__setitem__(name, calls[name] + 1)

    checkpointed.cascades[1].register_forward_pre_hook(count("cascade"))
    checkpointed.sens_net.norm_unet.register_forward_pre_hook(count("sens"))
    expected, checked = (_output_and_grads(model, kspace.double(), mask) for model in (plain, checkpointed))
    assert calls == {"cascade": 2, "sens": 4}  # forward, then recomputed in backward; 3 coils in chunks of 2
    for value, reference in zip(checked[:2], expected[:2]):
        assert relative_error(value, reference) <= 1e-12
    for name, grad in expected[2].items():
        assert (checked[2][name] - grad).abs().max() <= 1e-12 * max(grad.abs().max(), 1e-30), name
    calls.update(cascade=0, sens=0)
    with torch.no_grad():
        checkpointed(kspace.double(), mask)
    assert calls == {"cascade": 1, "sens": 2}  # no recomputation without grad


@pytest.mark.parametrize("coil_chunk", [0, 1, 2])
def test_sensitivity_coil_chunks_change_no_value(coil_chunk):
    kspace, mask = masked_input(2, 3, 16, 20)  # 6 coil images: chunks of 2 and of 1, and all at once
    reference = tiny_model(num_cascades=1, sens_coil_chunk=4).double()
    chunked = copy.deepcopy(reference)
    chunked.sens_net.coil_chunk = coil_chunk
    expected, checked = (_output_and_grads(model, kspace.double(), mask) for model in (reference, chunked))
    assert checked[0].dtype == torch.float64
    for value, wanted in zip(checked[:2], expected[:2]):
        assert relative_error(value, wanted) <= 1e-12


def test_float64_inputs_run_in_float64_and_agree_with_float32():
    kspace, mask = masked_input(1, 2, 24, 20)
    model = tiny_model().eval()
    with torch.no_grad():
        single = model(kspace, mask)
        double = copy.deepcopy(model).double()(kspace.double(), mask)
    assert double.dtype == torch.float64 and single.dtype == torch.float32
    assert relative_error(single.double(), double) < 1e-4


def test_a_batch_gives_each_slice_alone():
    kspace, mask = masked_input(2, 2, 16, 20)
    model = tiny_model().eval()
    with torch.no_grad():
        batched = model(kspace, mask)
        alone = torch.cat([model(kspace[i : i + 1], mask[i : i + 1]) for i in range(2)])
    assert relative_error(batched, alone) <= 1e-5


def test_autocast_touches_only_the_unets():
    kspace, mask = masked_input(1, 2, 16, 20)
    model = tiny_model()
    dtypes: dict[str, set] = {}

    def record(name):
        return lambda module, args, output: dtypes.setdefault(name, set()).add(
            (output[0] if isinstance(output, tuple) else output).dtype
        )

    model.sens_net.register_forward_hook(record("sens_maps"))
    model.sens_net.norm_unet.unet.input_conv.register_forward_hook(record("sens_unet_conv"))
    model.cascades[0].register_forward_hook(record("cascade_image"))
    model.cascades[0].norm_unet.register_forward_hook(record("norm_unet_output"))
    model.cascades[0].norm_unet.unet.decoders[0].register_forward_hook(record("cascade_unet_decoder"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(kspace, mask)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert dtypes.pop("sens_unet_conv") == dtypes.pop("cascade_unet_decoder") == {torch.bfloat16}
    assert dtypes == {name: {torch.float32} for name in ("sens_maps", "cascade_image", "norm_unet_output")}
    with torch.no_grad():
        reference = model(kspace, mask)
    assert relative_error(out.detach(), reference) < 0.1


def test_all_zero_kspace_stays_finite():
    """The entry divides 0 by a zero standard deviation here (NaN); this model divides by 1."""
    kspace, mask = masked_input(1, 2, 16, 16)
    model = tiny_model()
    out = model(torch.zeros_like(kspace), mask)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------ parts
def test_one_prelu_is_shared_by_every_cab_but_the_first_of_each_unet():
    model = tiny_model()
    cabs = [module for module in model.modules() if isinstance(module, ChannelAttentionBlock)]
    own = [cab for cab in cabs if "act" in cab._modules]
    unets = [module for module in model.modules() if isinstance(module, PromptUnet)]
    assert own == [unet.encoders[0].cabs[0] for unet in unets]
    assert all(cab.shared_act.module is model.shared_prelu for cab in cabs if cab not in own)
    assert [key for key in model.state_dict() if "prelu" in key] == ["shared_prelu.weight"]
    copied = copy.deepcopy(model).double()
    copied_cabs = [cab for cab in copied.modules() if isinstance(cab, ChannelAttentionBlock)]
    assert all(cab.shared_act.module is copied.shared_prelu for cab in copied_cabs if "act" not in cab._modules)
    assert copied.shared_prelu.weight.dtype == torch.float64


def test_history_is_newest_first_and_drops_the_oldest():
    first, second, third = (torch.full((1, 2, 1, 1), float(value)) for value in (1, 2, 3))
    assert momentum_input(first, None, 2).flatten().tolist() == [1] * 6  # the first cascade tiles n_history + 1 times
    history = next_history(first, None, 2)
    assert history.flatten().tolist() == [1] * 4
    history = next_history(second, history, 2)
    assert momentum_input(third, history, 2).flatten().tolist() == [3, 3, 2, 2, 1, 1]
    assert next_history(third, history, 2).flatten().tolist() == [3, 3, 2, 2]


def test_the_cascade_buffer_order_and_outputs():
    """U-Net input [x, A^H A x, latent, img_zf, A^H A x - img_zf]; outputs: channel 0 the term, 2 the latent."""
    cascade = tiny_model().cascades[0]
    image, ffx, latent, zero_filled = (torch.full((1, 1, 8, 8, 2), float(v)) for v in (1, 2, 3, 5))
    assert cascade.unet_input(image, ffx, latent, zero_filled)[0, :, 0, 0, 0].tolist() == [1, 2, 3, 5, -3]
    outputs = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(1, 5, 8, 8, 2)
    cascade.norm_unet.forward = lambda unet_input, history: (outputs, history)  # a U-Net that returns 0, 1, 2, 3, 4
    cascade.dc_weight.data.fill_(0.5)
    sens_maps = torch.zeros(1, 2, 8, 8, 2)  # A^H A x = 0
    sampled = torch.ones(1, 1, 1, 8, 1, dtype=torch.bool)
    x_next, next_latent, _ = cascade(image, zero_filled, latent, sampled, sens_maps)
    assert torch.equal(next_latent, outputs[:, 2:3])
    assert torch.equal(x_next, image - 0.5 * (0 - zero_filled) - outputs[:, :1])


def test_fixed_acs_window_is_round_8_percent_from_the_centre():
    for width, start, count in ((64, 30, 5), (76, 35, 6), (53, 25, 4), (396, 182, 32)):
        window = fixed_acs_window(width).flatten()
        assert window.sum() == count and window[start] and window[start + count - 1], width


@pytest.mark.parametrize("height, width", [(40, 396), (45, 53), (400, 401), (384, 384), (385, 383)])
def test_entry_crop_pads_odd_sizes_floor_first(height, width):
    image = torch.arange(height * width, dtype=torch.float64).view(1, height, width) + 1
    out = entry_crop_or_pad(image, (384, 384))
    top, left = max(384 - height, 0) // 2, max(384 - width, 0) // 2
    row, col = max(height - 384, 0) // 2, max(width - 384, 0) // 2
    rows, cols = min(height, 384), min(width, 384)
    assert torch.equal(out[0, top : top + rows, left : left + cols], image[0, row : row + rows, col : col + cols])
    assert out.abs().sum() == image[0, row : row + rows, col : col + cols].sum()
    same = all(n % 2 == 0 or n >= 384 for n in (height, width))
    assert torch.equal(out, center_crop_or_pad(image, (384, 384))) == same  # differs only where an odd axis is padded
