"""CLIP image encoder from a local open_clip checkpoint file (never a download).

``load_clip(checkpoint, arch)`` builds the open_clip model from a model config (a built-in
name such as ``ViT-B-32``, or a path to a model-config JSON file, which is registered with
``open_clip.add_model_config``) and loads ``pretrained=<the local file>``. Without ``arch``
the architecture is inferred from the checkpoint's tensor shapes. The result embeds whole
images (CLIP direction metric) and square crops of images (PatchNCE, paper section 3.3).

The text tower is loaded (open_clip checkpoints hold both) but never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class ClipLoadError(RuntimeError):
    """The CLIP checkpoint or architecture cannot be used; the message says why and what to do."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open_clip():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here may download
    import open_clip

    return open_clip


def known_architectures() -> list[str]:
    """Names of the open_clip model configs registered in this process."""
    return list(_open_clip().list_models())


def resolve_architecture(arch: str) -> str:
    """Return a registered config name for ``arch`` (a name, or a model-config JSON file path).

    Raises:
        ClipLoadError: naming ``arch`` and listing the known architectures.
    """
    oc = _open_clip()
    p = Path(arch)
    if p.suffix == ".json":
        if not p.is_file():
            raise ClipLoadError(f"CLIP model config file {p} does not exist")
        oc.add_model_config(p)
        arch = p.stem
    if arch not in oc.list_models():
        raise ClipLoadError(
            f"unknown CLIP architecture {arch!r}; known architectures: {', '.join(oc.list_models())} "
            "(or pass a model-config .json file)"
        )
    return arch


def _signature_from_state(state: dict[str, torch.Tensor]) -> dict[str, int] | None:
    """Shapes that pin down a ViT CLIP: embed dim, vision width/layers/patch/grid, text width/layers."""
    if next(iter(state), "").startswith("module."):
        state = {k[7:]: v for k, v in state.items()}
    conv = state.get("visual.conv1.weight")
    proj = state.get("visual.proj")
    tok = state.get("token_embedding.weight")
    if conv is None or proj is None or tok is None:
        return None
    blocks = {
        int(m.group(1)) for k in state if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))
    }
    tblocks = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    pos = state.get("visual.positional_embedding")
    grid = round((pos.shape[0] - 1) ** 0.5) if pos is not None else 0
    return {
        "embed_dim": int(proj.shape[1]),
        "width": int(conv.shape[0]),
        "patch_size": int(conv.shape[-1]),
        "layers": len(blocks),
        "image_size": grid * int(conv.shape[-1]),
        "text_width": int(tok.shape[1]),
        "text_layers": len(tblocks),
        "vocab_size": int(tok.shape[0]),
    }


def _signature_from_config(cfg: dict) -> dict[str, int] | None:
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if not isinstance(v.get("layers"), int) or "timm_model_name" in v or "hf_model_name" in t:
        return None
    size = v.get("image_size", 224)
    return {
        "embed_dim": cfg["embed_dim"],
        "width": v.get("width", 768),
        "patch_size": v.get("patch_size", 16),
        "layers": v["layers"],
        "image_size": size if isinstance(size, int) else size[0],
        "text_width": t.get("width", 512),
        "text_layers": t.get("layers", 12),
        "vocab_size": t.get("vocab_size", 49408),
    }


def infer_architecture(checkpoint: Path) -> str:
    """Find the registered ViT config whose tensor shapes match the checkpoint.

    Raises:
        ClipLoadError: when no known config matches (with the shapes found and the known names).
    """
    oc = _open_clip()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    sig = _signature_from_state(state) if isinstance(state, dict) else None
    if sig is None:
        raise ClipLoadError(
            f"{checkpoint} does not look like an open_clip ViT checkpoint (no visual.conv1 / visual.proj / "
            f"token_embedding tensors); pass --clip-arch NAME, one of: {', '.join(oc.list_models())}"
        )
    exact, loose = [], []
    for name in oc.list_models():
        csig = _signature_from_config(oc.get_model_config(name) or {})
        if csig is None:
            continue
        same = all(csig[k] == sig[k] for k in sig if k != "image_size")
        if same:
            (exact if csig["image_size"] == sig["image_size"] else loose).append(name)
    found = sorted(exact, key=len) or sorted(loose, key=len)
    if not found:
        raise ClipLoadError(
            f"the CLIP checkpoint {checkpoint} has an unknown architecture ({sig}); known architectures: "
            f"{', '.join(oc.list_models())}. Pass --clip-arch with a model-config .json file for it."
        )
    if len(found) > 1:
        log.info("CLIP checkpoint matches %s; using %s (pass --clip-arch to choose)", found, found[0])
    return found[0]


@dataclass(frozen=True)
class ClipInfo:
    arch: str
    path: str
    sha256: str
    image_size: int

    def describe(self) -> str:
        return f"clip:{self.arch} ({Path(self.path).name}, sha256 {self.sha256[:12]})"


class ClipImageEncoder(nn.Module):
    """Frozen CLIP image tower: whole images and square crops -> embeddings.

    Images are in [-1, 1], (B, 3, H, W); they are mapped to [0, 1], resized (bilinear, with
    antialiasing for whole images) to the encoder's input size and normalised with its mean/std.
    """

    def __init__(self, model: nn.Module, info: ClipInfo, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.info = info
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def description(self) -> str:
        return self.info.describe()

    def _encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image((x01 - self.mean) / self.std)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, D) embeddings (not normalised)."""
        s = self.info.image_size
        x = F.interpolate((images + 1) / 2, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return self._encode(x)

    def encode_crops(self, images: torch.Tensor, centers: torch.Tensor, crop: float) -> torch.Tensor:
        """Embed square crops.

        Args:
            images: (B, 3, H, W) in [-1, 1].
            centers: (n, 2) crop centres as (x, y) in [-1, 1] image coordinates, shared by the batch.
            crop: crop side as a fraction of the image side (0 < crop <= 1).
        Returns:
            (B, n, D) embeddings, differentiable with respect to ``images``.
        """
        b = images.shape[0]
        n = centers.shape[0]
        s = self.info.image_size
        theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = crop
        theta[:, 1, 1] = crop
        theta[:, :, 2] = centers.to(images)
        grid = F.affine_grid(theta, [n, 3, s, s], align_corners=False)  # (n, s, s, 2)
        x = images.repeat_interleave(n, dim=0)  # (B*n, 3, H, W)
        crops = F.grid_sample(
            x, grid.repeat(b, 1, 1, 1), mode="bilinear", padding_mode="border", align_corners=False
        )
        return self._encode((crops + 1) / 2).reshape(b, n, -1)


def _smaller_input(cfg: dict, image_size: int | None) -> int | None:
    """``image_size`` rounded down to a multiple of the ViT patch, or None when it is not smaller."""
    v = cfg.get("vision_cfg", {})
    native = v.get("image_size", 224)
    native = native[0] if isinstance(native, list | tuple) else native
    if image_size is None or image_size >= native or not isinstance(v.get("patch_size"), int):
        return None
    patch = v["patch_size"]
    return max(patch, image_size // patch * patch)


def load_clip(
    checkpoint: Path | str,
    arch: str | None = None,
    device: torch.device | str = "cpu",
    image_size: int | None = None,
) -> ClipImageEncoder:
    """Create the open_clip model ``arch`` and load the local ``checkpoint`` into it.

    Args:
        checkpoint: an open_clip / OpenAI-format CLIP state dict file (.pt/.pth/.bin/.safetensors).
        arch: config name or model-config JSON path; None infers it from the checkpoint.
        device: where the encoder runs.
        image_size: optional smaller input size (rounded down to a multiple of the patch size; the
            positional embedding is interpolated), to make crops cheaper on CPU; None, or a size
            not below the config's, keeps the config's size.
    Raises:
        FileNotFoundError: the checkpoint file is missing.
        ClipLoadError: unknown architecture, or a checkpoint that does not fit the architecture.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint {path} not found (give a local open_clip checkpoint file)")
    oc = _open_clip()
    name = resolve_architecture(arch) if arch else infer_architecture(path)
    image_size = _smaller_input(oc.get_model_config(name) or {}, image_size)
    try:
        model = oc.create_model(
            name,
            pretrained=str(path.resolve()),
            device=device,
            force_image_size=image_size,
            pretrained_text=False,
            weights_only=True,
        )
    except (RuntimeError, KeyError, ValueError, AssertionError) as e:
        raise ClipLoadError(f"CLIP checkpoint {path} does not fit architecture {name!r}: {e}") from e
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    pp = oc.get_model_preprocess_cfg(model)
    mean = tuple(pp.get("mean", oc.constants.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", oc.constants.OPENAI_DATASET_STD))
    info = ClipInfo(arch=name, path=str(path), sha256=file_sha256(path), image_size=size)
    log.info("CLIP image encoder: %s, %d px input", info.describe(), size)
    return ClipImageEncoder(model, info, mean, std).to(device)
