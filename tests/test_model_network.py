"""The whole FeatureVarNet: shapes, batching, masks, numerics under zero padding and autocast, checkpointing."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from utils.model.feature_block import FeatureBlock, ImageConv
from utils.model.feature_space import FeatureDecoder, FeatureEncoder
from utils.model.feature_varnet import FeatureVarNet
from utils.model.sensitivity import SensitivityModel
from utils.model.varnet_block import VarNetBlock

SMALL = dict(feature_chans=4, unet_chans=4, pools=2, sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)


def small_model(cascade_counts=(1, 1, 1), **overrides) -> FeatureVarNet:
    torch.manual_seed(0)
    return FeatureVarNet(cascade_counts, **{**SMALL, **overrides})


def equispaced_mask(width: int, acceleration: int, acs_lines: int) -> torch.Tensor:
    """(1, 1, 1, W, 1): every ``acceleration``-th line plus ``acs_lines`` centre lines."""
    mask = torch.zeros(width)
    mask[::acceleration] = 1
    centre = width // 2
    mask[centre - acs_lines // 2 : centre - acs_lines // 2 + acs_lines] = 1
    return mask.view(1, 1, 1, width, 1)


def masked_kspace(batch: int, coils: int, height: int, width: int, mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Random k-space (B, C, H, W, 2) at raw-data scale (~1e-4) with the unsampled lines zeroed."""
    generator = torch.Generator().manual_seed(seed)
    return 1e-4 * torch.randn(batch, coils, height, width, 2, generator=generator) * mask


@pytest.mark.parametrize(
    "coils, height, width",
    [(1, 24, 17), (20, 16, 33), (4, 37, 20), (2, 400, 401)],
)
def test_output_is_384_square_for_any_size_and_coil_count(coils, height, width):
    mask = equispaced_mask(width, 4, 4)
    out = small_model()(masked_kspace(1, coils, height, width, mask), mask)
    assert out.shape == (1, 384, 384) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # narrower than 384: zero-padded about the centre, nothing outside the image
    if width < 384:
        left = 384 // 2 - width // 2
        assert out[..., :left].abs().max() == 0 and out[..., left + width :].abs().max() == 0
        top = max(0, 384 // 2 - height // 2)
        assert out[..., top : top + min(height, 384), left : left + width].abs().min() > 0


def test_zero_cascade_network_is_the_zero_filled_rss_in_fastmri_convention():
    """With no cascades the output is RSS(IFFT(masked k-space)) centre-cropped, checked against numpy."""
    height, width = 390, 400
    mask = equispaced_mask(width, 4, 10)
    kspace = masked_kspace(1, 3, height, width, mask)
    out = small_model((0, 0, 0))(kspace, mask)[0].numpy()

    complex_kspace = kspace[0, ..., 0].double().numpy() + 1j * kspace[0, ..., 1].double().numpy()
    coil_images = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(complex_kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(axis=0))
    top, left = (height - 384) // 2, (width - 384) // 2
    expected = rss[top : top + 384, left : left + 384]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_batch_gives_each_slice_its_own_result_and_serves_acc4_and_acc8():
    coils, height, width = 3, 20, 27
    masks = torch.cat([equispaced_mask(width, 4, 6), equispaced_mask(width, 8, 4)])
    kspace = torch.cat([masked_kspace(1, coils, height, width, masks[i : i + 1], seed=i) for i in range(2)])
    # second slice ten times brighter: per-sample normalisation must not mix the two
    kspace[1] *= 10
    model = small_model((1, 2, 1)).eval()
    with torch.no_grad():
        batched = model(kspace, masks)
        single = torch.cat([model(kspace[i : i + 1], masks[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5 * single.abs().max().item())
    assert not torch.allclose(batched[0], batched[1] / 10, rtol=1e-2)


def test_no_nan_or_inf_with_zero_padded_columns_and_a_silent_coil():
    coils, height, width = 3, 24, 30
    mask = equispaced_mask(width, 4, 6)
    mask[..., :3, :] = 1  # zero-padded outer columns, marked as sampled (as knee data has them)
    kspace = masked_kspace(1, coils, height, width, mask)
    kspace[..., :3, :] = 0
    kspace[..., -3:, :] = 0
    kspace[:, 1] = 0  # a coil that recorded nothing
    kspace.requires_grad_(True)
    model = small_model((1, 2, 1))
    out = model(kspace, mask)
    assert torch.isfinite(out).all()
    (out.square().mean() + out.mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(kspace.grad).all()


def test_all_zero_kspace_stays_finite():
    mask = equispaced_mask(16, 4, 4)
    kspace = torch.zeros(1, 2, 16, 16, 2)
    model = small_model()
    out = model(kspace, mask)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_autocast_touches_only_the_unets():
    mask = equispaced_mask(20, 4, 4)
    kspace = masked_kspace(1, 2, 18, 20, mask)
    model = small_model((1, 1, 1))
    dtypes: dict[str, set] = {}

    def record(name):
        def hook(module, inputs, output):
            tensor = output.features if hasattr(output, "features") else output
            dtypes.setdefault(name, set()).add(tensor.dtype)

        return hook

    for module in model.modules():
        if isinstance(module, (FeatureEncoder, FeatureDecoder, ImageConv, FeatureBlock, VarNetBlock, SensitivityModel)):
            module.register_forward_hook(record(type(module).__name__))
    model.feature_blocks[0].feature_unet.down_blocks[0].register_forward_hook(record("feature_unet_conv"))
    model.image_blocks[0].norm_unet.unet.down_blocks[0].register_forward_hook(record("image_unet_conv"))

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(kspace, mask)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert dtypes.pop("feature_unet_conv") == {torch.bfloat16}
    assert dtypes.pop("image_unet_conv") == {torch.bfloat16}
    assert dtypes == {name: {torch.float32} for name in dtypes} and len(dtypes) == 6

    with torch.no_grad():
        reference = model(kspace, mask)
    assert (out - reference).abs().max() < 0.1 * reference.abs().max()


def test_checkpointing_gives_identical_outputs_and_gradients_and_recomputes():
    mask = equispaced_mask(22, 4, 4)
    kspace = masked_kspace(2, 2, 20, 22, mask)
    plain = small_model((2, 2, 2))
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpointing = True

    calls = {"count": 0}

    def count(module, inputs):
        calls["count"] += 1

    checkpointed.feature_blocks[1].register_forward_pre_hook(count)
    results = []
    for model in (plain, checkpointed):
        out = model(kspace, mask)
        (out.square().sum() * 1e8).backward()
        results.append((out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
    assert calls["count"] == 2  # forward, then the recomputation in backward

    (out_plain, grads_plain), (out_ckpt, grads_ckpt) = results
    assert (out_plain - out_ckpt).abs().max() <= 1e-6 * out_plain.abs().max()
    for name, grad in grads_plain.items():
        assert (grad - grads_ckpt[name]).abs().max() <= 1e-6 * max(grad.abs().max(), 1e-12), name

    calls["count"] = 0
    with torch.no_grad():
        checkpointed(kspace, mask)
    checkpointed.eval()
    checkpointed(kspace, mask).sum().backward()
    assert calls["count"] == 2  # no recomputation without grad or in eval


@pytest.mark.parametrize("coil_chunk, checkpointing", [(1, False), (4, False), (1, True), (4, True)])
def test_sensitivity_coil_chunks_change_no_value(coil_chunk, checkpointing):
    """Chunked (and per-chunk checkpointed) sensitivity U-Nets give the unchunked outputs and gradients.

    In float64, so that the comparison sees the maths and not float32 rounding: in float32 the unchunked model
    itself moves by ~1e-6 between 1 and 2 CPU threads, and chunked runs differ by as much.
    """
    mask = equispaced_mask(22, 4, 4).double()
    kspace = masked_kspace(2, 3, 20, 22, mask).double()  # 6 coil images: chunks of 4 leave a remainder of 2
    reference = small_model((1, 1, 1), sens_coil_chunk=0).double()
    chunked = copy.deepcopy(reference)
    chunked.sens_net.coil_chunk = coil_chunk
    chunked.checkpointing = checkpointing
    batch_sizes = []
    chunked.sens_net.norm_unet.register_forward_pre_hook(lambda module, inputs: batch_sizes.append(len(inputs[0])))
    results = []
    for model in (reference, chunked):
        model_input = kspace.clone().requires_grad_()
        out = model(model_input, mask)
        assert out.dtype == torch.float64
        (out.square().sum() * 1e8).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        results.append((out.detach(), model_input.grad, grads))
    chunks = [coil_chunk] * (6 // coil_chunk) + ([6 % coil_chunk] if 6 % coil_chunk else [])
    assert sorted(batch_sizes) == sorted(chunks * (2 if checkpointing else 1))  # each chunk recomputed once
    for value, expected in zip(results[1], results[0]):
        assert (value - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_e2e_cascades_only_build_an_e2e_varnet():
    model = FeatureVarNet((0, 0, 3), sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)
    assert len(model.feature_blocks) == 0 and len(model.image_blocks) == 3
    assert not hasattr(model, "encoder") and not hasattr(model, "decoder")
    mask = equispaced_mask(18, 4, 4)
    out = model(masked_kspace(1, 2, 16, 18, mask), mask)
    assert out.shape == (1, 384, 384)


def test_image_conv_sits_on_every_third_feature_block():
    model = small_model((5, 10, 3))
    with_conv = [i for i, block in enumerate(model.feature_blocks) if block.image_conv is not None]
    assert with_conv == [0, 3, 6, 9, 12]
    lska = [i for i, block in enumerate(model.feature_blocks) if "LSKAConvBlock" in repr(block)]
    assert lska == [0, 1, 2, 3, 4]


def test_output_does_not_depend_on_the_kspace_scale_factor():
    """No eps in the statistics: scaling k-space inside the model changes nothing (with norm_eps it did, 24-66x)."""
    mask = equispaced_mask(30, 4, 6)
    kspace = masked_kspace(1, 3, 24, 30, mask)
    outputs = []
    for factor in (1.0, 1e6):
        model = small_model((1, 1, 1), kspace_mult_factor=factor).eval()
        with torch.no_grad():
            outputs.append(model(kspace, mask))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-5 * outputs[1].abs().max().item())


@pytest.mark.parametrize("cascade_counts", [(0, 0, 2), (1, 0, 1)])
def test_image_cascades_in_the_checkerboard_frame_equal_the_shifted_ones(monkeypatch, cascade_counts):
    """Even sizes run the image cascades with plain FFTs on modulated k-space; in float64 that is the same maths
    as the centred FFTs with their shifts (the path odd sizes take)."""
    import utils.model.feature_varnet as feature_varnet

    mask = equispaced_mask(22, 4, 4).double()
    kspace = masked_kspace(2, 3, 20, 22, mask).double()
    model = small_model(cascade_counts).double().eval()
    with torch.no_grad():
        modulated = model(kspace, mask)
        monkeypatch.setattr(feature_varnet, "shift_free", lambda height, width: False)
        shifted = model(kspace, mask)
    assert (modulated - shifted).abs().max() <= 1e-12 * shifted.abs().max()


def test_cpu_inference_refines_one_coil_per_call_with_the_same_values():
    """Without autograd on the CPU the sensitivity U-Net sees one coil at a time, whatever ``sens_coil_chunk``."""
    mask = equispaced_mask(22, 4, 4)
    kspace = masked_kspace(1, 3, 20, 22, mask)
    model = small_model((0, 0, 1), sens_coil_chunk=0).eval()
    batch_sizes = []
    model.sens_net.norm_unet.register_forward_pre_hook(lambda module, inputs: batch_sizes.append(len(inputs[0])))
    with torch.no_grad():
        per_coil = model(kspace, mask)
    assert batch_sizes == [1, 1, 1]
    with torch.enable_grad():
        all_coils = model(kspace, mask)
    assert batch_sizes[3:] == [3]
    torch.testing.assert_close(per_coil, all_coils.detach(), rtol=0, atol=1e-6 * all_coils.abs().max().item())
