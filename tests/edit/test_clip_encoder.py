"""open_clip loading from a local checkpoint file the test writes (tiny ViT config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backend.train.clip_encoder import ClipLoadError, infer_architecture, load_clip


def test_tiny_clip_loads_from_file_and_embeds(tiny_clip_checkpoint: tuple[Path, Path]) -> None:
    cfg, ckpt = tiny_clip_checkpoint
    enc = load_clip(ckpt, str(cfg))  # arch given as a model-config JSON file
    assert enc.info.arch == "EmoTestTinyCLIP" and enc.info.image_size == 32
    assert "clip:EmoTestTinyCLIP" in enc.description
    # the weights in the file are the ones used
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(enc.model.visual.conv1.weight, state["visual.conv1.weight"])
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    whole = enc.encode_images(img)
    assert whole.shape == (2, 16)
    # a crop covering the whole image equals the whole-image embedding (same resampling path)
    full = enc.encode_crops(img, torch.zeros(1, 2), 1.0)[:, 0]
    resized = F.interpolate((img + 1) / 2, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(full, enc._encode(resized), atol=1e-4)
    crops = enc.encode_crops(img, torch.tensor([[-0.5, -0.5], [0.5, 0.5]]), 0.25)
    assert crops.shape == (2, 2, 16) and not torch.allclose(crops[:, 0], crops[:, 1])


def test_architecture_inferred_from_checkpoint(tiny_clip_checkpoint: tuple[Path, Path]) -> None:
    _cfg, ckpt = tiny_clip_checkpoint  # the fixture registered the config
    assert infer_architecture(ckpt) == "EmoTestTinyCLIP"
    assert load_clip(ckpt, None, image_size=16).info.image_size == 16


def test_unknown_architecture_named_with_known_list(tiny_clip_checkpoint: tuple[Path, Path]) -> None:
    _cfg, ckpt = tiny_clip_checkpoint
    with pytest.raises(ClipLoadError, match=r"unknown CLIP architecture 'ViT-Nonexistent-9'.*ViT-B-32"):
        load_clip(ckpt, "ViT-Nonexistent-9")


def test_checkpoint_of_another_architecture(tiny_clip_checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    _cfg, ckpt = tiny_clip_checkpoint
    with pytest.raises(ClipLoadError, match=r"does not fit architecture 'ViT-B-32'"):
        load_clip(ckpt, "ViT-B-32")
    other = tmp_path / "odd.pt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    state["visual.proj"] = torch.zeros(32, 24)  # an embed dim no registered config has
    torch.save(state, other)
    with pytest.raises(ClipLoadError, match="unknown architecture"):
        load_clip(other)
    junk = tmp_path / "junk.pt"
    torch.save({"weight": torch.zeros(3)}, junk)
    with pytest.raises(ClipLoadError, match="does not look like an open_clip"):
        load_clip(junk)
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "missing.pt")


def test_smaller_input_size_rounds_to_patch() -> None:
    from backend.train.clip_encoder import _smaller_input

    vit32 = {"vision_cfg": {"image_size": 224, "patch_size": 32}}
    assert _smaller_input(vit32, 112) == 96  # 3x3 patches, no lost border
    assert _smaller_input({"vision_cfg": {"image_size": 224, "patch_size": 14}}, 112) == 112
    assert _smaller_input({"vision_cfg": {"image_size": 32, "patch_size": 8}}, 112) is None  # never upscale
    assert _smaller_input(vit32, None) is None
