"""Perceptual distance: LPIPS with a locally stored backbone, or a documented fallback.

LPIPS (Zhang et al. 2018) needs two sets of weights:

* the backbone (VGG16 or AlexNet ImageNet features) - torchvision's published file, looked up
  in ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``) under its standard name
  ``vgg16-397923af.pth`` or ``alexnet-owt-7be5be79.pth``; we never download it;
* the small linear heads, which ship inside the ``lpips`` wheel (``lpips/weights/v0.1``).

We build ``lpips.LPIPS(pretrained=True, pnet_rand=True)`` so the package constructs a randomly
initialised backbone (no download attempt) and loads its own linear heads, then copy the
backbone's ``features.*`` tensors from the local file (``torch.load(weights_only=True)``).

Without a backbone file the fallback is ``(1 - SSIM) / 2 + L1 of image gradients``
(:func:`ssim_gradient_distance`): a warning is logged and :attr:`Perceptual.description`
(recorded in checkpoints and metrics) says so. The fallback is a training loss; held-out metrics
report LPIPS only with a real backbone (``backend.metrics.evaluate``).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from backend.metrics.ssim import ssim

log = logging.getLogger(__name__)

BACKBONE_FILES: dict[str, str] = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
}
"""torchvision's published file name for each LPIPS backbone."""

FALLBACK_DESCRIPTION = "fallback ssim+gradient"


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y: (B,C,H,W-1), (B,C,H-1,W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the image gradients of ``pred`` and ``target`` (per image, (B,))."""
    pgx, pgy = image_gradients(pred)
    tgx, tgy = image_gradients(target)
    return (torch.abs(pgx - tgx).mean(dim=(1, 2, 3)) + torch.abs(pgy - tgy).mean(dim=(1, 2, 3)))


def ssim_gradient_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The documented LPIPS fallback: ``(1 - SSIM) / 2 + gradient L1``, per image (B,).

    Both terms are 0 for identical images; SSIM is computed on [-1, 1] inputs (data range 2).
    """
    p, t = pred.float(), target.float()
    return (1.0 - ssim(p, t, data_range=2.0)) / 2 + gradient_l1(p, t)


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_backbone(net: str = "auto") -> tuple[str, Path] | None:
    """Return (net, file) of the first backbone present locally (vgg preferred), or None."""
    nets = list(BACKBONE_FILES) if net == "auto" else [net]
    for name in nets:
        if name not in BACKBONE_FILES:
            raise ValueError(f"unknown LPIPS backbone {name!r}; choose vgg or alex")
        path = hub_checkpoint_dir() / BACKBONE_FILES[name]
        if path.is_file():
            return name, path
    return None


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _load_backbone(model: nn.Module, path: Path) -> None:
    """Copy torchvision ``features.<i>.<param>`` tensors into lpips' ``slice<k>.<i>.<param>``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or non-state-dict file
        raise ValueError(f"{path} is not a readable torchvision state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    targets = dict(model.net.named_parameters())
    new: dict[str, torch.Tensor] = {}
    for name, param in targets.items():
        _slice, idx, pname = name.split(".")
        key = f"features.{idx}.{pname}"
        if key not in state:
            raise ValueError(f"{path} lacks {key}: not a torchvision backbone file")
        if tuple(state[key].shape) != tuple(param.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(param.shape)}")
        new[name] = state[key]
    model.net.load_state_dict(new, strict=True)


class Perceptual(nn.Module):
    """Perceptual distance between (B, 3, H, W) images in [-1, 1] -> (B,) (0 = identical).

    Attributes:
        kind: "lpips" or "fallback".
        description: human-readable record, e.g. ``"lpips-vgg (file .../vgg16-397923af.pth, sha256 ab12...)"``
            or ``"fallback ssim+gradient"``.
    """

    def __init__(self, lpips_model: nn.Module | None, description: str) -> None:
        super().__init__()
        self.lpips = lpips_model
        self.kind = "lpips" if lpips_model is not None else "fallback"
        self.description = description
        if lpips_model is not None:
            for p in lpips_model.parameters():
                p.requires_grad_(False)
            lpips_model.eval()

    @property
    def is_lpips(self) -> bool:
        return self.lpips is not None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.lpips is None:
            return ssim_gradient_distance(x, y)
        return self.lpips(x.float(), y.float(), normalize=False).reshape(x.shape[0])

    def train(self, mode: bool = True) -> Perceptual:  # the LPIPS net always stays in eval mode
        super().train(mode)
        if self.lpips is not None:
            self.lpips.eval()
        return self


_CACHE: dict[tuple[str, str, str], Perceptual] = {}


def build_perceptual(net: str = "auto", device: torch.device | str = "cpu", allow_fallback: bool = True,
                     quiet: bool = False) -> Perceptual:
    """Build the perceptual distance (cached per backbone file and device).

    Args:
        net: "auto" (vgg, then alex), "vgg" or "alex".
        device: where it runs.
        allow_fallback: when no backbone file exists, return the SSIM+gradient fallback (with a
            warning) instead of raising ``FileNotFoundError``.
        quiet: log the fallback at INFO instead of WARNING (for repeated calls).
    """
    found = find_backbone(net)
    if found is None:
        where = hub_checkpoint_dir()
        msg = (f"no LPIPS backbone in {where} (looked for {', '.join(BACKBONE_FILES.values())}); "
               f"using the fallback perceptual loss: (1 - SSIM)/2 + gradient L1")
        if not allow_fallback:
            raise FileNotFoundError(msg)
        (log.info if quiet else log.warning)(msg)
        return Perceptual(None, FALLBACK_DESCRIPTION).to(device)
    name, path = found
    key = (name, str(path.resolve()), str(device))
    if key not in _CACHE:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecated `pretrained=` argument inside lpips
            model = lpips.LPIPS(pretrained=True, net=name, pnet_rand=True, verbose=False)
        _load_backbone(model, path)
        desc = f"lpips-{name} (file {path}, sha256 {file_sha256(path)[:16]})"
        log.info("perceptual loss: %s", desc)
        _CACHE[key] = Perceptual(model, desc).to(device)
    return _CACHE[key]
