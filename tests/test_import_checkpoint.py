"""Importing reference checkpoints: fastMRI VarNet state dicts, the entry's checkpoints, refusals, init_from."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from utils.errors import UserInputError
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import load_checkpoint, save_checkpoint
from utils.tools.import_checkpoint import import_checkpoint

REPO = Path(__file__).resolve().parents[1]


def fastmri_unet_shapes(prefix: str, chans: int, pools: int) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of fastMRI's ``Unet(2, 2, chans, pools)`` (``fastmri/models/unet.py``), written out by hand."""
    shapes = {f"{prefix}down_sample_layers.0.layers.0.weight": (chans, 2, 3, 3),
              f"{prefix}down_sample_layers.0.layers.4.weight": (chans, chans, 3, 3)}
    for level in range(1, pools):
        c_in, c_out = chans * 2 ** (level - 1), chans * 2**level
        shapes[f"{prefix}down_sample_layers.{level}.layers.0.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{prefix}down_sample_layers.{level}.layers.4.weight"] = (c_out, c_out, 3, 3)
    deepest = chans * 2 ** (pools - 1)
    shapes[f"{prefix}conv.layers.0.weight"] = (2 * deepest, deepest, 3, 3)
    shapes[f"{prefix}conv.layers.4.weight"] = (2 * deepest, 2 * deepest, 3, 3)
    for up in range(pools):
        c_out = chans * 2 ** (pools - 1 - up)
        shapes[f"{prefix}up_transpose_conv.{up}.layers.0.weight"] = (2 * c_out, c_out, 2, 2)
        block = f"{prefix}up_conv.{up}." + ("0." if up == pools - 1 else "")
        shapes[f"{block}layers.0.weight"] = (c_out, 2 * c_out, 3, 3)
        shapes[f"{block}layers.4.weight"] = (c_out, c_out, 3, 3)
    shapes[f"{prefix}up_conv.{pools - 1}.1.weight"] = (2, chans, 1, 1)
    shapes[f"{prefix}up_conv.{pools - 1}.1.bias"] = (2,)
    return shapes


def fastmri_varnet_state_dict(num_cascades: int, chans: int, pools: int, sens_chans: int, sens_pools: int) -> dict[str, torch.Tensor]:
    """Random weights in the layout of ``fastmri.models.VarNet`` (small values keep 12 cascades finite)."""
    shapes = fastmri_unet_shapes("sens_net.norm_unet.unet.", sens_chans, sens_pools)
    for cascade in range(num_cascades):
        shapes[f"cascades.{cascade}.dc_weight"] = (1,)
        shapes.update(fastmri_unet_shapes(f"cascades.{cascade}.model.unet.", chans, pools))
    generator = torch.Generator().manual_seed(0)
    return {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=1200)


def test_the_hand_written_fastmri_layout_is_the_golden_files(golden_dir):
    golden = torch.load(golden_dir / "fastmri_varnet.pt", weights_only=True)
    config = golden["config"]
    ours = fastmri_varnet_state_dict(config["num_cascades"], config["chans"], config["pools"], config["sens_chans"], config["sens_pools"])
    assert {key: tuple(value.shape) for key, value in ours.items()} == {key: tuple(v.shape) for key, v in golden["state_dict"].items()}


def _score(tiny_data: Path, checkpoint: Path, out: Path) -> str:
    recon = _run("reconstruct_from_ckpt.py", "-c", str(checkpoint), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-o", str(out), "--no-progress")
    assert recon.returncode == 0, recon.stderr
    score = _run("leaderboard_eval.py", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out))
    assert score.returncode == 0, score.stderr
    return score.stdout


@pytest.mark.slow
def test_published_size_fastmri_varnet_imports_reconstructs_and_scores(tiny_data, tmp_path):
    source = tmp_path / "brain_leaderboard_state_dict.pt"
    torch.save(fastmri_varnet_state_dict(12, 18, 4, 8, 4), source)
    out = tmp_path / "imported.pt"
    result = _run("-m", "utils.tools.import_checkpoint", str(source), "--out", str(out))
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(out)
    config = checkpoint["model_config"]
    assert (config["cascade_counts"], config["image_chans"], config["image_pools"], config["sens_chans"], config["sens_pools"]) == ([0, 0, 12], 18, 4, 8, 4)
    assert checkpoint["origin"]["layout"] == "fastmri" and len(checkpoint["origin"]["sha256"]) == 64
    # the published E2E-VarNet is this repository's varnet config, weight for weight
    varnet = build_model(load_model_config("varnet"))
    assert {k: v.shape for k, v in varnet.state_dict().items()} == {k: v.shape for k, v in checkpoint["model"].items()}
    report = _score(tiny_data, out, tmp_path / "recon")
    assert "Leaderboard SSIM : " in report and "Leaderboard SSIM (acc8): " in report


def _geekseek_checkpoint(golden_dir: Path, path: Path) -> None:
    """A file shaped like the entry's ``model.pt``: weights, optimizer, epoch and a pickled SimpleNamespace."""
    state_dict = torch.load(golden_dir / "geekseek_dlka_varnet.pt", weights_only=True)["state_dict"]
    args = types.SimpleNamespace(exp_name="FLvarnet_SOTA_ver2", lr=1e-3, data_path_train=Path("/data/train"),
                                 model=types.SimpleNamespace(cascade_counts=[2, 2, 1], variant="dlka"))
    optimizer = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}
    torch.save({"epoch": 7, "args": args, "model": state_dict, "optimizer": optimizer, "best_val_loss": 0.1,
                "exp_dir": "/result/FLvarnet_SOTA_ver2"}, path)


@pytest.mark.slow
def test_geekseek_checkpoint_imports_with_its_config_as_plain_data_and_reconstructs(golden_dir, tiny_data, tmp_path):
    source = tmp_path / "best_model.pt"
    _geekseek_checkpoint(golden_dir, source)
    with pytest.raises(Exception):  # the plain safe loader refuses it: it holds a pickled object
        torch.load(source, weights_only=True)
    checkpoint = import_checkpoint(source, tmp_path / "imported.pt")
    assert checkpoint["model_config"]["cascade_counts"] == [2, 2, 1] and checkpoint["model_config"]["lska_k_size"] == 7
    origin = load_checkpoint(tmp_path / "imported.pt")["origin"]
    assert origin["source_epoch"] == 7
    assert origin["source_args"] == {"exp_name": "FLvarnet_SOTA_ver2", "lr": 1e-3, "data_path_train": "/data/train",
                                     "model": {"cascade_counts": [2, 2, 1], "variant": "dlka"}}
    report = _score(tiny_data, tmp_path / "imported.pt", tmp_path / "recon")
    assert "Leaderboard SSIM (acc4): " in report


class Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["exploit", "foreign_class"])
def test_objects_outside_the_allow_list_are_refused_unexecuted(golden_dir, tmp_path, payload):
    source, marker = tmp_path / "model.pt", tmp_path / "pwned"
    state_dict = torch.load(golden_dir / "geekseek_dlka_varnet.pt", weights_only=True)["state_dict"]
    args = Exploit(marker) if payload == "exploit" else torch.nn.Identity()
    torch.save({"epoch": 1, "args": args, "model": state_dict}, source)
    result = _run("-m", "utils.tools.import_checkpoint", str(source), "--out", str(tmp_path / "out.pt"))
    assert result.returncode != 0 and not marker.exists() and not (tmp_path / "out.pt").exists()
    message = result.stderr.strip()
    assert "\n" not in message and str(source) in message and "refusing to unpickle" in message
    assert ("system" if payload == "exploit" else "Identity") in message


def test_unknown_and_missing_keys_are_named(golden_dir, tmp_path):
    state_dict = dict(torch.load(golden_dir / "fastmri_varnet.pt", weights_only=True)["state_dict"])
    state_dict["cascades.0.model.attention.weight"] = torch.zeros(3)
    torch.save(state_dict, tmp_path / "extra.pt")
    with pytest.raises(UserInputError, match=r"unknown to the fastmri layout: \['cascades.0.model.attention.weight'\]"):
        import_checkpoint(tmp_path / "extra.pt", tmp_path / "a.pt")
    del state_dict["cascades.0.model.attention.weight"]
    del state_dict["cascades.1.model.unet.up_conv.2.layers.4.weight"]
    torch.save(state_dict, tmp_path / "missing.pt")
    with pytest.raises(UserInputError, match=r"1 missing \(first: image_blocks.1.norm_unet.unet.up_blocks.2.layers.3.weight\)"):
        import_checkpoint(tmp_path / "missing.pt", tmp_path / "b.pt")
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()


def test_bad_sources_and_existing_outputs_are_refused(golden_dir, tmp_path):
    out = tmp_path / "out.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(UserInputError, match="already exists"):
        import_checkpoint(golden_dir / "fastmri_varnet.pt", out)
    assert out.read_bytes() == b"keep me"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((golden_dir / "fastmri_varnet.pt").read_bytes()[:5000])
    with pytest.raises(UserInputError, match="truncated or corrupt"):
        import_checkpoint(truncated, tmp_path / "c.pt")
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, {"model": {}, "model_config": {}})
    with pytest.raises(UserInputError, match="already a checkpoint of this repository"):
        import_checkpoint(ours, tmp_path / "d.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "nothing.pt")
    with pytest.raises(UserInputError, match="no state dict of tensors"):
        import_checkpoint(tmp_path / "nothing.pt", tmp_path / "e.pt")


def test_overrides_reach_the_imported_config(golden_dir, tmp_path):
    checkpoint = import_checkpoint(golden_dir / "fastmri_varnet.pt", tmp_path / "out.pt", overrides=["kspace_mult_factor=1e6", "acs_lines=contiguous"])
    assert checkpoint["model_config"]["kspace_mult_factor"] == 1e6 and checkpoint["model_config"]["acs_lines"] == "contiguous"
    with pytest.raises(UserInputError, match="acs_lines"):
        import_checkpoint(golden_dir / "fastmri_varnet.pt", tmp_path / "bad.pt", overrides=["acs_lines=sideways"])


# a one-cascade E2E-VarNet: seconds per epoch on the tiny preset
SMALL_VARNET = ["model.cascade_counts=[0,0,1]", "model.sens_chans=2", "model.sens_pools=2", "model.image_chans=2",
                "model.image_pools=2", "model.identity_init=false"]


@pytest.mark.slow
def test_init_from_starts_training_at_the_imported_weights_and_records_it(tiny_data, tmp_path, caplog):
    from utils.training.trainer import train

    source = tmp_path / "state_dict.pt"
    torch.save(fastmri_varnet_state_dict(1, 2, 2, 2, 2), source)
    imported = tmp_path / "imported.pt"
    import_checkpoint(source, imported)
    common = [f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={tmp_path / 'result'}", "training.epochs=1",
              "logger.mode=disabled", "data.num_workers=0", "optimizer.lr=1e-12"]
    with caplog.at_level(logging.INFO):
        state = train(compose_config("demo", [*common, "exp_name=finetune", f"training.init_from={imported}", *SMALL_VARNET]), progress=False)
    assert "initialised the model from" in caplog.text and "fastmri" in caplog.text
    assert state.init_from["origin"]["layout"] == "fastmri" and state.init_from["sha256"]
    checkpoint = load_checkpoint(tmp_path / "result/finetune/checkpoints/model.pt")
    assert checkpoint["init_from"]["path"] == str(imported.resolve())
    start = load_checkpoint(imported)["model"]
    for key, value in checkpoint["model"].items():  # lr 1e-12: the run's weights are the imported ones
        torch.testing.assert_close(value, start[key], rtol=0, atol=1e-9, msg=key)
    assert checkpoint["optimizer"]["state"][0]["step"].item() == state.global_step  # a fresh optimizer

    with pytest.raises(UserInputError, match=r"training.init_from.*missing"):
        train(compose_config("demo", [*common, "exp_name=wrong_model", f"training.init_from={imported}", *SMALL_VARNET,
                        "model.cascade_counts=[0,0,2]"]), progress=False)
    with pytest.raises(UserInputError, match="not a checkpoint of this repository"):
        train(compose_config("demo", [*common, "exp_name=foreign", f"training.init_from={source}", *SMALL_VARNET]), progress=False)
