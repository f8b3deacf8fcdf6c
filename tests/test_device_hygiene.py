"""Device hygiene: no tensor on the training, validation or reconstruction path is made without a device.

A tensor made without ``device=`` lands on the default device, the CPU, and a user's first CUDA run fails
with "expected all tensors to be on the same device". No GPU runs these tests, so the harness makes such a
tensor fail on the CPU: the model and the batches live on the CPU (``device = cpu`` wherever one is passed),
the *default* device is ``meta`` (``torch.set_default_device``, set after the model and the data are built),
and every torch call that returns a meta tensor raises at once, naming the call and the line that made it
(:class:`_FailOnMeta`: a stray that is never used, or only read with ``.item()``, would otherwise pass). The
autograd engine runs a custom Function's backward without the caller's modes, so the harness puts them back
there too.

Where the default device must not reach: code that relies on it being the CPU *by design*, and that we do
not own. Two such places are on these paths. The DataLoader's own tensors (its iterator's seed,
``default_collate``'s ``torch.tensor`` of the slice numbers and maxima) are made, in a real run, in a worker
or the main process with the CPU default, and moved with ``.to(device)`` afterwards. Torch's NAdam (the
recipe's) and RAdam keep their ``step`` counters on the CPU by making them with the default device (Adam
names the CPU). The harness gives exactly those two the CPU as default device (:class:`_LoaderInternalsOnCpu`,
:func:`_step_with_cpu_default`). Our own data code (the dataset, MRAugment, mask augmentation, masking) runs
under the same rules as the model and names its devices, because it also runs between two device calls in
the 2026 harness contract (:func:`utils.learning.test_part.recon_slice`), outside any DataLoader, and because
a user's ``torch.set_default_device("cuda")`` would otherwise reach it.

Every ``configs/model/*.yaml`` runs (configs added later too), shrunk by :data:`SMALL_OVERRIDES` of its
``_target_``: a training step in the fast tier, a validation and a reconstruction in the slow one (the
model's code is the same in all three). What the stages add around the model, every ``configs/loss`` and
``configs/optimizer`` option and the self-checks (a deliberately device-less ``torch.zeros`` fails each stage)
run in the fast tier with a free zero-filled model.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import h5py
import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

import utils.inference.reconstruct as reconstruct
from tests.conftest import compose_config
from utils.data.dataset import SliceDataset
from utils.data.sampler import ShapeGroupedBatchSampler
from utils.data.subset import VolumeSelection
from utils.data.transforms import ApplyFileMask
from utils.evaluation.slices import zero_filled_image
from utils.learning import test_part
from utils.model.builder import build_model
from utils.model.checkpoint import save_checkpoint
from utils.training.build import build_datasets, build_loss, build_optimizer
from utils.training.interrupt import StopOnSignal
from utils.training.loop import TrainState, train_one_epoch
from utils.training.validate import validate

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((REPO / "configs" / "model").glob("*.yaml"))
LOSS_CONFIGS = sorted((REPO / "configs" / "loss").glob("*.yaml"))
OPTIMIZER_CONFIGS = sorted((REPO / "configs" / "optimizer").glob("*.yaml"))
CPU = torch.device("cpu")
TORCH_DIR = str(Path(torch.__file__).parent)
STAGES = ("train", "validate", "reconstruct")
KNEE_ACC8 = ("knee", 8)  # the smallest files of the tiny preset: 2 slices of 640 x 344..400 per split


def _at_most_one(counts) -> list[int]:
    """Each cascade kind once at most: every stage of the config still runs, in seconds."""
    return [min(int(count), 1) for count in counts]


# per model ``_target_``: key -> small value, or a function of the configured value; a new model type needs an entry
_FEATURE_VARNET = {  # 2 feature channels: the least identity_init allows
    "cascade_counts": _at_most_one, "feature_chans": 2, "unet_chans": 2, "pools": 1,
    "sens_chans": 1, "sens_pools": 1, "image_chans": 2, "image_pools": 1,
}
_PROMPTMR_PLUS = {  # every part (prompts, CABs, history, buffer, sensitivity net) at its narrowest
    "num_cascades": 2, "n_feat0": 2, "feature_dim": [2, 3, 4], "prompt_dim": [1, 2, 2], "sens_n_feat0": 2,
    "sens_feature_dim": [2, 2, 2], "sens_prompt_dim": [1, 1, 1], "prompt_size": [2, 2, 2], "n_enc_cab": [1, 1, 1],
    "n_dec_cab": [1, 1, 1], "n_bottleneck_cab": 1, "n_history": 1, "ca_reduction": 2,
}
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {
    "utils.model.FeatureVarNet": _FEATURE_VARNET,
    "utils.model.feature_varnet.FeatureVarNet": _FEATURE_VARNET,
    "utils.model.PromptMRPlus": _PROMPTMR_PLUS,
    "utils.model.promptmr.PromptMRPlus": _PROMPTMR_PLUS,
}
# every MRAugment transform on for every slice and the mask always replaced: the whole recipe runs
FORCED_RECIPE = [
    "augment=recipe", "augment.schedule.kind=constant", "augment.schedule.strength=1.0",
    *(f"augment.image.weights.{name}=1.0" for name in ("flip_h", "flip_v", "rotation", "scaling", "translation", "shear")),
]


def small_model_config(path: Path, **extra: Any) -> DictConfig:
    """``configs/model/<path>`` with the small overrides of its ``_target_`` (and ``extra``) applied."""
    node = OmegaConf.load(path)
    if node._target_ not in SMALL_OVERRIDES:
        pytest.fail(f"{path.name}: add small overrides for {node._target_} to SMALL_OVERRIDES in {Path(__file__).name}")
    for key, value in {**SMALL_OVERRIDES[node._target_], **extra}.items():
        node[key] = value(node[key]) if callable(value) else value
    return node


def _caller() -> str:
    """``file:line in function`` of the innermost frame outside torch and this mode: the code to fix."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = Path(frame.f_code.co_filename)
    return f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{frame.f_lineno} in {frame.f_code.co_name}"


class _FailOnMeta(TorchFunctionMode):
    """Raise at the first torch call that returns a tensor on ``meta`` (one made without a device), naming where."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if any(isinstance(output, torch.Tensor) and output.is_meta for output in outputs):
            name = getattr(func, "__name__", None) or repr(func)
            raise RuntimeError(f"device hygiene: {name} made a tensor without an explicit device at {_caller()} "
                               "(it landed on the default device)")
        return result


_BACKWARD = BackwardCFunction.apply


def _backward_on_meta(ctx, *args):
    with torch.device("meta"), _FailOnMeta():
        return _BACKWARD(ctx, *args)


@contextmanager
def device_side_on_meta() -> Iterator[None]:
    """Default device ``meta`` and :class:`_FailOnMeta`, custom backwards included; as before after, whatever happens."""
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    BackwardCFunction.apply = _backward_on_meta
    try:
        with _FailOnMeta():
            yield
    finally:
        BackwardCFunction.apply = _BACKWARD
        torch.set_default_device(None if previous == CPU else previous)


def _with_cpu_default(function):
    def on_cpu(*args, **kwargs):
        with torch.device("cpu"):
            return function(*args, **kwargs)
    return on_cpu


class _LoaderInternalsOnCpu:
    """``loader`` whose torch-owned parts (iterator seed, collation) see the CPU as default device; its dataset does not."""

    def __init__(self, loader: DataLoader):
        loader.collate_fn = _with_cpu_default(loader.collate_fn)
        self.loader = loader

    def __getattr__(self, name: str) -> Any:  # dataset, batch_sampler: what the callers read
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        with torch.device("cpu"):
            return iter(self.loader)


def _step_with_cpu_default(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    optimizer.step = _with_cpu_default(optimizer.step)
    return optimizer


@pytest.fixture
def cpu_side_volume_loader(monkeypatch) -> None:
    """``reconstruct_dataset`` builds its loader itself: wrap the one it builds."""
    volume_loader = reconstruct.volume_loader
    monkeypatch.setattr(reconstruct, "volume_loader", lambda *args, **kwargs: _LoaderInternalsOnCpu(volume_loader(*args, **kwargs)))


def run_config(tiny_data: Path, subset: tuple[str, int] | None, loss: str = "ssim_l1", optimizer: str = "nadam") -> DictConfig:
    """The demo recipe on ``tiny_data``: forced augmentation, the entry's loss and optimizer unless told, ``subset`` only."""
    overrides = [f"data.root={tiny_data}", "data.synthetic_preset=null", "data.num_workers=0", f"loss={loss}", f"optimizer={optimizer}",
                 *FORCED_RECIPE, "training.epochs=1", "training.grad_accumulation=1", "training.grad_clip=1.0"]
    if subset is not None:
        overrides += [f"data.subset.anatomy={subset[0]}", f"data.subset.acceleration={subset[1]}"]
    return compose_config("demo", overrides)


def leaderboard_sets(tiny_data: Path, subset: tuple[str, int] | None) -> dict[str, SliceDataset]:
    """Leaderboard k-space (no targets), as ``reconstruct_from_ckpt.py`` reads it; only ``subset``'s files if given."""
    keep = None if subset is None else VolumeSelection((subset[0],), (subset[1],))
    accelerations = (4, 8) if subset is None else (subset[1],)
    return {f"acc{acc}": SliceDataset(tiny_data / "leaderboard" / f"acc{acc}", ApplyFileMask(), kspace_only=True,
                                      keep_volume=keep) for acc in accelerations}


def run_device_paths(model: nn.Module, loss_fn: nn.Module, cfg: DictConfig, out: Path, stages=STAGES, batches: int = 1,
                     batch_size: int = 1, subset: tuple[str, int] | None = KNEE_ACC8) -> dict[str, Any]:
    """Build data and optimizer on the CPU, then run ``stages`` under :func:`device_side_on_meta`; returns what each gave."""
    train_set, val_set = build_datasets(cfg, Path(cfg.data.root))
    train_set.set_epoch(0)
    order = list(ShapeGroupedBatchSampler(train_set.example_shapes(), batch_size, seed=cfg.seed))[:batches]
    train_loader = _LoaderInternalsOnCpu(DataLoader(train_set, batch_sampler=order, num_workers=0))
    val_loader = _LoaderInternalsOnCpu(reconstruct.volume_loader(val_set, 2))
    optimizer = _step_with_cpu_default(build_optimizer(cfg.optimizer, model.parameters()))
    results: dict[str, Any] = {}
    with device_side_on_meta():
        if "train" in stages:
            with StopOnSignal() as stop:
                results["train"] = train_one_epoch(model, train_loader, len(order), loss_fn, optimizer, lambda stepped: None,
                                                   TrainState(), cfg.training, CPU, stop, progress=False)
        if "validate" in stages:
            results["validate"] = validate(model, val_loader, loss_fn, CPU, num_images=1, progress=False, keep_outputs=True,
                                           figure_rows=True)
        if "reconstruct" in stages:
            clock = reconstruct.ModelClock(CPU, warmup_slices=1)  # one untimed slice: both branches of ModelClock.run
            for acc, dataset in leaderboard_sets(Path(cfg.data.root), subset).items():
                reconstruct.reconstruct_dataset(model, dataset, out / acc, CPU, batch_size=1, progress=False, clock=clock)
            results["reconstruct"] = sorted(out.glob("acc*/*.h5"))
    return results


def check_results(results: dict[str, Any], val_slices: int) -> None:
    """Every stage that ran got to its end with finite numbers (the paths really ran, nothing was skipped)."""
    if "train" in results:
        assert np.isfinite(results["train"])
    if "validate" in results:
        validation = results["validate"]
        assert np.isfinite(validation.loss) and np.isfinite(validation.ssim) and len(validation.outputs) == val_slices
        assert validation.figure_rows and len(validation.images) == 1
    if "reconstruct" in results:
        assert results["reconstruct"]
        for path in results["reconstruct"]:
            with h5py.File(path, "r") as handle:
                volume = handle["reconstruction"][()]
            assert volume.shape[1:] == (384, 384) and np.isfinite(volume).all(), path


# The model's code is the same in every stage (only activation checkpointing looks at the mode), and what the
# stages add around it runs in the fast tier with the free model below; a model's eval stages are slow.
CONFIG_STAGES = [pytest.param(("train",), id="train"),
                 pytest.param(("validate", "reconstruct"), id="validate+reconstruct", marks=pytest.mark.slow)]


@pytest.mark.parametrize("stages", CONFIG_STAGES)
@pytest.mark.parametrize("model_config", MODEL_CONFIGS, ids=lambda path: path.stem)
def test_model_config_is_device_clean(model_config, stages, tiny_data, tmp_path, cpu_side_volume_loader):
    """Each shipped model: a NAdam step on an augmented slice (loss ssim_l1); a validation and a reconstruction."""
    cfg = run_config(tiny_data, KNEE_ACC8)
    torch.manual_seed(0)
    model = build_model(small_model_config(model_config))
    check_results(run_device_paths(model, build_loss(cfg.loss), cfg, tmp_path / "recon", stages), val_slices=2)


def test_harness_contract_is_device_clean(tiny_data, tmp_path):
    """The 2026 contract: ``recon_slice`` makes each slice's sample on the host, between two device calls."""
    config = OmegaConf.to_container(small_model_config(REPO / "configs" / "model" / "baby_varnet.yaml"))
    save_checkpoint(tmp_path / "best_model.pt", {"model": build_model(config).state_dict(), "model_config": config, "epoch": 0})
    model = test_part.load_model(SimpleNamespace(exp_dir=tmp_path), CPU)
    with device_side_on_meta():
        ctx = test_part.prep_volume(None, tiny_data / "leaderboard" / "acc8" / "kspace" / "knee_test1.h5", CPU)
        image = test_part.recon_slice(model, ctx, 0)
    assert image.shape == (384, 384) and image.device == CPU and torch.isfinite(image).all()


class _ZeroFilled(nn.Module):
    """The zero-filled image times one weight, a model of no cost; ``stray`` makes a device-less tensor in
    the forward or in a custom backward, the regression the harness must catch."""

    def __init__(self, stray: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.stray = stray

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.stray == "forward":
            torch.zeros(3)  # never even used: only the harness's own check can see it
        output = zero_filled_image(masked_kspace) * self.weight
        return _StrayBackward.apply(output) if self.stray == "backward" else output


class _StrayBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad + torch.zeros(grad.shape[-1])


@pytest.mark.parametrize("loss_config", LOSS_CONFIGS, ids=lambda path: path.stem)
def test_loss_config_is_device_clean(loss_config, tiny_data, tmp_path, cpu_side_volume_loader):
    """Each ``configs/loss`` option through a training step and a validation."""
    cfg = run_config(tiny_data, KNEE_ACC8, loss=loss_config.stem)
    check_results(run_device_paths(_ZeroFilled(), build_loss(cfg.loss), cfg, tmp_path / "recon"), val_slices=2)


@pytest.mark.parametrize("optimizer_config", OPTIMIZER_CONFIGS, ids=lambda path: path.stem)
def test_optimizer_config_is_device_clean(optimizer_config, tiny_data, tmp_path):
    """Each ``configs/optimizer`` option for two steps (the second one reads the state the first one made)."""
    cfg = run_config(tiny_data, KNEE_ACC8, optimizer=optimizer_config.stem)
    results = run_device_paths(_ZeroFilled(), build_loss(cfg.loss), cfg, tmp_path / "recon", ("train",), batches=2)
    assert np.isfinite(results["train"])


@pytest.mark.parametrize("stage,stray", [*((stage, "forward") for stage in STAGES), ("train", "backward")])
def test_a_device_less_tensor_fails_the_harness(stage, stray, tiny_data, tmp_path, cpu_side_volume_loader):
    """Self-check: a device-less ``torch.zeros`` fails each stage, and the default device is the CPU again after."""
    cfg = run_config(tiny_data, KNEE_ACC8)
    where = rf"tests/test_device_hygiene.py:\d+ in {stray}"  # the toy's own line, not some other stray on the way
    with pytest.raises(RuntimeError, match=f"device hygiene: zeros made a tensor without an explicit device at {where}"):
        run_device_paths(_ZeroFilled(stray), build_loss(cfg.loss), cfg, tmp_path / "recon", (stage,))
    assert torch.get_default_device() == CPU and torch.zeros(1).device == CPU and BackwardCFunction.apply is _BACKWARD


@pytest.mark.slow
def test_final_recipe_on_the_whole_tiny_preset_is_device_clean(tiny_data, tmp_path, cpu_side_volume_loader):
    """The final model's stages with the recipe's activation checkpointing, on both anatomies and accelerations:
    a step of two slices, all validation slices (a figure row per anatomy x acceleration), both leaderboard folders."""
    cfg = run_config(tiny_data, None)
    torch.manual_seed(0)
    model = build_model(small_model_config(REPO / "configs" / "model" / "dlka_varnet.yaml", checkpointing=True))
    results = run_device_paths(model, build_loss(cfg.loss), cfg, tmp_path / "recon", batch_size=2, subset=None)
    check_results(results, val_slices=8)
    assert len(results["validate"].figure_rows) == 4 and len(results["reconstruct"]) == 4
