"""LPIPS loading from a local torchvision backbone file, and the documented fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from backend.metrics import perceptual


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    perceptual._CACHE.clear()
    return tmp_path


def _write_alexnet_features(torch_home: Path) -> Path:
    """A state dict with torchvision AlexNet's key names and shapes (features only: ~10 MB)."""
    torch.manual_seed(0)
    feats = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    path = torch_home / "hub" / "checkpoints" / perceptual.BACKBONE_FILES["alex"]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def test_fallback_without_backbone(torch_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        p = perceptual.build_perceptual("auto")
    assert p.kind == "fallback" and p.description == perceptual.FALLBACK_DESCRIPTION
    assert "no LPIPS backbone" in caplog.text
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = x.clone()
    y[1] += 0.3 * torch.randn_like(y[1])
    d = p(x, y)
    assert d.shape == (2,) and d[0].abs() < 1e-5 and d[1] > 0.05
    with pytest.raises(FileNotFoundError, match="no LPIPS backbone"):
        perceptual.build_perceptual("auto", allow_fallback=False)


def test_lpips_loads_local_backbone(torch_home: Path) -> None:
    path = _write_alexnet_features(torch_home)
    p = perceptual.build_perceptual("auto")
    assert p.is_lpips and "lpips-alex" in p.description and str(path) in p.description
    # the backbone holds exactly the file's tensors
    state = torch.load(path, weights_only=True)
    conv0 = p.lpips.net.slice1[0].weight
    assert torch.equal(conv0, state["features.0.weight"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    d = p(x, x.flip(-1))
    assert d.shape == (2,) and torch.all(d > 0)
    assert torch.allclose(p(x, x), torch.zeros(2), atol=1e-6)


def test_bad_backbone_file_is_named(torch_home: Path) -> None:
    path = torch_home / "hub" / "checkpoints" / perceptual.BACKBONE_FILES["alex"]
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(3, 3, 1, 1)}, path)
    with pytest.raises(ValueError, match=r"features\.0\.weight has shape"):
        perceptual.build_perceptual("alex")
