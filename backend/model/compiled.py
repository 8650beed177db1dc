"""The avatar's inference forward compiled by ``torch.compile``, with an eager fallback.

On CPU, PyTorch's inductor turns the generator's elementwise passes (demodulation scale, bias,
noise, leaky ReLU, the skip additions) into fused C++ loops around the convolutions; at the
128 px ``cpu`` preset this renders ~1.5x faster than eager (``bench/render.py --compile``). The
cost is a compile on first use: about a minute on 2 cores, a few seconds when inductor's on-disk
cache (``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``) already holds the graph.

Shapes are static: one graph per batch size, so callers pad a short last batch to the full one
(``Renderer`` does). Inputs are made contiguous first, since a graph is also specialised on
strides: a permuted view in one call and a padded (contiguous) batch in the next would compile
twice. When compiling fails (no C++ compiler, an unsupported op, an old torch),
the forward falls back to eager once, logs why, and records it in ``status``.

    fwd = InferenceForward(avatar, compile=True)
    image = fwd(uv, expr_window)        # (B, 3, S, S), as avatar(uv, expr_window).image

A style's translator (``post``) runs after the avatar's graph, eagerly: its rendering forward is
already oneDNN's fused convolutions (``backend.style.inference_plan``; its U-Net in bfloat16 where
the CPU computes that natively), which inductor's float32 graph of it did not beat. Compiled into
the avatar's graph, a style rendered at 1.35x the compiled unstyled render on both measured
subjects; run after the graph, at 1.24-1.25x (docs/editing.md, render cost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def _root_cause(exc: BaseException) -> str:
    """'Type: first line' of the innermost exception (torch wraps a backend's error)."""
    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    while inner is not None and inner is not exc:
        exc, inner = inner, getattr(inner, "inner_exception", None) or inner.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


class InferenceForward:
    """``avatar(uv, expr_window).image``, compiled when asked and possible, then ``post`` (eager).

    Args:
        avatar: an ``EmoAvatar`` in eval mode.
        compile: try ``torch.compile`` (inductor, static shapes); False runs eager.
        backend: the ``torch.compile`` backend ("inductor"; tests pass others).
        post: optional module run on every image as ``post.on_render(image, uv)`` (a style's
            ``StyleTranslator``).

    Attributes:
        status: "eager", "compiled (inductor)" once a compiled call succeeded, or
            "eager (compile failed: ...)" after a fallback.
    """

    def __init__(self, avatar: torch.nn.Module, *, compile: bool = False,
                 backend: str | Callable = "inductor", post: torch.nn.Module | None = None) -> None:
        self.avatar = avatar
        self.post = post
        self.backend_name = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
        self.status = "eager"
        self._compiled: Callable | None = None
        if compile:
            self._compiled = torch.compile(self._image, backend=backend, dynamic=False)
            self.status = f"compiling ({self.backend_name})"

    @property
    def compiled(self) -> bool:
        """True while calls go through the compiled graph."""
        return self._compiled is not None

    def _image(self, uv: torch.Tensor, expr_window: torch.Tensor) -> torch.Tensor:
        return self.avatar(uv, expr_window).image

    def _post(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        return image if self.post is None else self.post.on_render(image, uv)

    def __call__(self, uv: torch.Tensor, expr_window: torch.Tensor) -> torch.Tensor:
        """uv (B, 3, S, S) float, expr_window (B, window, K) -> image (B, 3, S, S) in about [-1, 1]."""
        return self._post(self.avatar_image(uv, expr_window), uv)

    def with_plain(self, uv: torch.Tensor, expr_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As calling it, but also the avatar's image before ``post``: (plain, image), (B, 3, S, S) each."""
        plain = self.avatar_image(uv, expr_window)
        return plain, self._post(plain, uv)

    def avatar_image(self, uv: torch.Tensor, expr_window: torch.Tensor) -> torch.Tensor:
        """The avatar's image alone (no ``post``), through the compiled graph when there is one."""
        if self._compiled is not None:
            uv, expr_window = uv.contiguous(), expr_window.contiguous()  # one layout, one graph
            if self.status.startswith("compiling"):  # the service forwards this to the add-on
                log.info("compiling the renderer with torch.compile (%s, batch %d): about a minute the "
                         "first time, seconds once cached", self.backend_name, uv.shape[0])
            try:
                image = self._compiled(uv, expr_window)
            except Exception as exc:  # any compiler failure means: run eager
                self.status = f"eager (compile failed: {_root_cause(exc)})"
                log.warning("torch.compile of the renderer failed, rendering eager from now on: %s",
                            self.status)
                self._compiled = None
            else:
                if self.status.startswith("compiling"):
                    self.status = f"compiled ({self.backend_name})"
                    log.info("renderer compiled with torch.compile (%s)", self.backend_name)
                return image
        return self._image(uv, expr_window)
