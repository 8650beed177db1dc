"""The style translator's forward for rendering: the same arithmetic in fewer passes over memory.

``StyleTranslator.forward`` runs an ``InferencePlan`` in eval mode without gradients, float32 on
CPU (``StyleTranslator.inference_plan`` builds and caches it); training runs
``forward_reference``. Both compute the same thing up to float rounding
(``tests/edit/test_translator_speed_path.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.style.lattice import cell_mean
from backend.style.translator import LEAK, REFINE_FEATURES, StyleTranslator, cell_channels, upsample

_FUSED_OPS: bool | None = None
_BF16: bool | None = None
_BF16_CONV: tuple[bool, bool] | None = None


def fused_ops_available() -> bool:
    """True when this torch has oneDNN's fused convolutions (``torch.ops.mkldnn._convolution_pointwise``,
    what ``torch.compile`` uses on CPU) and they agree with ``F.conv2d`` on a small case."""
    global _FUSED_OPS
    if _FUSED_OPS is None:
        try:
            cl = torch.channels_last
            g = torch.Generator().manual_seed(0)
            x = torch.randn(2, 5, 9, 7, generator=g).contiguous(memory_format=cl)
            other = torch.randn(2, 4, 9, 7, generator=g).contiguous(memory_format=cl)
            w = torch.randn(4, 5, 3, 3, generator=g).contiguous(memory_format=cl)
            b = torch.randn(4, generator=g)
            conv = _PackedConv(w, b, 1, list(x.shape))
            ref = F.conv2d(x, w, b, 1, 1)
            _FUSED_OPS = bool(torch.backends.mkldnn.is_available()
                              and torch.allclose(conv(x, act=True), F.leaky_relu(ref, LEAK), atol=1e-5)
                              and torch.allclose(conv.add(x, other), ref + other, atol=1e-5))
        except (AttributeError, RuntimeError, NotImplementedError):
            _FUSED_OPS = False
    return _FUSED_OPS


def _bf16_conv() -> tuple[bool, bool]:
    """(runs, agrees): whether oneDNN packs and runs a bfloat16 convolution on this CPU at all, and
    whether its result agrees with ``F.conv2d`` in float32 to bfloat16's precision. Probed once."""
    global _BF16_CONV
    if _BF16_CONV is None:
        try:
            if not fused_ops_available():
                raise RuntimeError("no fused oneDNN ops")
            g = torch.Generator().manual_seed(0)
            x = torch.rand(2, 5, 9, 7, generator=g) * 2 - 1
            w = torch.randn(4, 5, 3, 3, generator=g) * 0.2
            ref = F.conv2d(x, w, None, 1, 1)
            bf = torch.bfloat16
            got = _PackedConv(w, None, 1, list(x.shape), bf)(_cl(x.to(bf))).float()
            _BF16_CONV = (True, bool(torch.allclose(got, ref, atol=0.02, rtol=0.02)))
        except (AttributeError, RuntimeError, NotImplementedError):
            _BF16_CONV = (False, False)
    return _BF16_CONV


def bf16_native() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512 BF16 or AMX) and oneDNN's fused
    convolution runs on bfloat16 here, agreeing with ``F.conv2d`` in float32 to bfloat16's
    precision. Elsewhere bfloat16 would be emulated, slower than float32, so plans stay float32."""
    global _BF16
    if _BF16 is None:
        cpu = torch.cpu
        native = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                      or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
        _BF16 = native and _bf16_conv()[1]
    return _BF16


def bf16_runs() -> bool:
    """True when oneDNN packs and runs a bfloat16 convolution on this CPU at all (natively, or
    emulated with AVX-512); False on CPUs without AVX-512 (AVX2 only), where oneDNN refuses it, so
    only float32 plans exist there (``bf16_native`` is then False too)."""
    return _bf16_conv()[0]


class _PackedConv:
    """One 3x3 convolution (padding 1) with its weights channels-last and reordered for oneDNN
    once (``input_size``: (B, C, H, W) it is packed for; other sizes still give the same result),
    weights and bias in ``dtype`` (the inputs' dtype).

    ``conv(x, act)``: the convolution (+ LeakyReLU(``LEAK``) fused when ``act``);
    ``conv.add(x, other)``: the convolution + ``other`` (same shape as the output, or
    broadcastable over the batch), fused. ``x`` and ``other`` channels-last."""

    __slots__ = ("bias", "stride", "weight")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                 input_size: list[int], dtype: torch.dtype = torch.float32) -> None:
        w = weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        self.stride = [stride, stride]
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(w, [1, 1], self.stride, [1, 1], 1,
                                                                   input_size)
        self.bias = None if bias is None else bias.detach().to(dtype).contiguous()

    def __call__(self, x: torch.Tensor, act: bool = False) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, [1, 1], self.stride, [1, 1], 1,
            "leaky_relu" if act else "none", [LEAK] if act else [], "")

    def add(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, [1, 1], self.stride, [1, 1], 1, "add", None, None, [], "")


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class InferencePlan:
    """A translator's ``forward`` for rendering: the same arithmetic in fewer passes over memory.

    Built by ``StyleTranslator.inference_plan`` for one input shape and one set of weights (the
    plan holds copies: a later change of the weights needs a new plan, which ``forward`` makes).
    Differences from ``forward_reference``, none of which changes what is computed (beyond float
    rounding, and bfloat16's where ``dtype`` asks for it):

    - every convolution runs through oneDNN's fused operator with prepacked weights (no per-call
      weight slicing or reordering); LeakyReLU runs inside the convolution, and additions that
      follow one (the residual blocks', the decoder merges', the refinement head's, the output's)
      are fused into it;
    - the first convolution and the refinement head's are split by input (image, guides, screen
      channels; image, coarse output), so no concatenated copy is made;
    - the screen channels are the same on every frame: their part of the first convolution (with
      its bias) is computed once, as are the screen layer and the lattice's cells at this size;
    - a batch runs ``CHUNK`` frames at a time, so a chunk's full-resolution features stay in the
      core's cache from one convolution to the next (at 128 px, 8 frames of 12 channels are 6 MB).

    Args:
        net: the translator (eval mode); its config and weights are read once.
        shape: (B, 3, H, W) of the images this plan runs on.
        screen_map: True when callers pass per-batch screen channels instead of the stored screen's.
        dtype: of the U-Net's convolutions after the first (weights and features). With bfloat16
            (``bf16_native``; ``StyleTranslator.low_precision``) the first convolution still sees
            the input unrounded, the change leaves the U-Net as float32, and the refinement head,
            the grade, the lattice and the screen run in float32: on the demo's `cartoon` style the
            output differs from the float32 plan by 0.0008 on average and 0.016 at most (in [-1, 1]
            units; an 8-bit level is 0.0078), and the translator takes 2.3 ms a frame there
            against 3.3 ms in float32 (128 px, 2 threads; docs/editing.md, render cost).
    """

    CHUNK = 4
    """Frames per pass: the cpu preset's translator alone, one thread, 128 px, took 6.6 ms of CPU
    per frame at 4 against 7.3 at 8, 6.5 at 2 and 6.7 at 1 (docs/editing.md, render cost)."""

    def __init__(self, net: StyleTranslator, shape: torch.Size | tuple[int, ...], screen_map: bool,
                 dtype: torch.dtype = torch.float32) -> None:
        cfg = net.cfg
        self.dtype = dtype
        b, _, h, w = (int(v) for v in shape)
        b = self.chunk = min(b, self.CHUNK)
        r = cfg.unshuffle
        self.cfg, self.h, self.w = cfg, h, w
        self.pad = ((-w) % (4 * r), (-h) % (4 * r))
        hn, wn = (h + self.pad[1]) // r, (w + self.pad[0]) // r  # the network's own grid
        self.size = (hn, wn)

        def size(c: int, k: int = 1) -> list[int]:
            return [b, c, hn // k, wn // k]

        def packed(conv: nn.Conv2d, cin: int, k: int, weight: torch.Tensor | None = None,
                   bias: bool = True, dtype: torch.dtype = dtype) -> _PackedConv:
            return _PackedConv(conv.weight if weight is None else weight, conv.bias if bias else None,
                               conv.stride[0], size(cin, k), dtype)

        wd = cfg.width
        first = net.inc[0][0]
        n_img, n_g, n_s = 3 * r * r, cfg.guides_in * r * r, cfg.screen_input * r * r
        rest = slice(n_img + n_g, n_img + n_g + n_s)
        self.stored_screen = bool(cfg.screen_input) and not screen_map and net.screen.numel() > 0
        self.screen_input = bool(cfg.screen_input) and screen_map
        # the first convolution, split by input; the bias goes with the first part that runs
        with torch.no_grad():
            self.screen_term = None
            if self.stored_screen:
                ch = net.screen_map(h, w, first.weight)[:, :cfg.screen_input]
                ws = first.weight[:, rest].contiguous(memory_format=torch.channels_last)
                term = F.conv2d(self._prep(ch), ws, first.bias, 1, 1)
                # one copy per frame of the batch: oneDNN fuses a same-shape addition only
                self.screen_term = _cl(term.expand(b, -1, -1, -1))
            f32 = torch.float32  # the first convolution sees the input unrounded
            self.in_img = packed(first, n_img, 1, first.weight[:, :n_img], self.screen_term is None, f32)
            self.in_g = packed(first, n_g, 1, first.weight[:, n_img:n_img + n_g], False, f32) if n_g else None
            self.in_s = (packed(first, n_s, 1, first.weight[:, rest], False, f32) if self.screen_input
                         else None)
            self.inc1 = packed(net.inc[1][0], wd, 1)
            self.down1 = packed(net.down1[0], wd, 1)
            self.down2 = packed(net.down2[0], 2 * wd, 2)
            self.mid = [(packed(blk.body[0][0], 4 * wd, 4), packed(blk.body[1], 4 * wd, 4))
                        for blk in net.mid]
            self.merges = []
            for up, coarse, skip, k in ((net.up2, 4 * wd, 2 * wd, 2), (net.up1, 2 * wd, wd, 1)):
                conv = up.conv[0]
                at = 2 * k if up.low else k  # the coarse part runs before or after the upsampling
                self.merges.append((up.low, packed(conv, coarse, at, conv.weight[:, :coarse]),
                                    packed(conv, skip, k, conv.weight[:, coarse:], bias=False)))
            self.out = packed(net.out, wd, 1)
            self.refine = None
            self.n_y = 3 + (REFINE_FEATURES if cfg.refine else 0)  # the rest of y controls the gated screen
            if net.refine is not None:
                head, last = net.refine[0][0], net.refine[1]
                n_y = self.n_y
                full = [b, 3, h, w]
                self.refine = (_PackedConv(head.weight[:, :3], head.bias, 1, full),
                               _PackedConv(head.weight[:, 3:], None, 1, [b, n_y, h, w]),
                               _PackedConv(last.weight, last.bias, 1, [b, head.out_channels, h, w]))
            self.gated, self.gated_inputs, self.screen_layer = net.gated, None, None
            if net.screen.numel() and net.gated is not None:
                full = net.screen_map(h, w, first.weight)
                channels, parts = full[:, :cfg.screen_input], full[:, cfg.screen_input:]
                self.gated_inputs = (parts, net.gated.screen_term(channels, parts))
            elif net.screen.numel():
                self.screen_layer = net.screen_layer(h, w, first.weight)
            self.cells = net.cell_map(h, w, first.weight.device)
            self.grade = None
            if net.grade is not None:  # per source channel j: (1, 3, h, w) column j, then the offset
                m, b = net.grade_fields(h, w, first.weight)
                self.grade = ([_cl(m[:, :, j]) for j in range(3)], _cl(b))

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the network's grid: replicate-padded to a multiple of 4 * unshuffle,
        pixel-unshuffled, channels-last."""
        if self.pad[0] or self.pad[1]:
            x = F.pad(x, (0, self.pad[0], 0, self.pad[1]), mode="replicate")
        if self.cfg.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.cfg.unshuffle)
        return _cl(x)

    def __call__(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                 screen_map: torch.Tensor | None = None) -> torch.Tensor:
        """As ``StyleTranslator.forward``: (B, 3, H, W) [, guides, screen_map] -> (B, 3, H, W)."""
        n = self.chunk
        if image.shape[0] <= n:
            return self._run(image, guides, screen_map)
        parts = [self._run(image[i:i + n], None if guides is None else guides[i:i + n],
                           None if screen_map is None else screen_map[i:i + n])
                 for i in range(0, image.shape[0], n)]
        return torch.cat(parts)  # channels-last like its parts

    def _run(self, image: torch.Tensor, guides: torch.Tensor | None,
             screen_map: torch.Tensor | None) -> torch.Tensor:
        h, w, r = self.h, self.w, self.cfg.unshuffle
        image = cell_channels(image, self.cells) if self.cfg.cell_input else _cl(image)
        x = self._prep(image) if (self.pad[0] or self.pad[1] or r > 1) else image
        if self.screen_term is not None:
            term = self.screen_term if x.shape[0] == self.chunk else self.screen_term[:x.shape[0]]
            f = self.in_img.add(x, term)
        else:
            f = self.in_img(x, act=self.in_g is None and self.in_s is None)
        if self.in_g is not None:
            f = self.in_g.add(self._prep(guides), f)
        if self.in_s is not None:
            f = self.in_s.add(self._prep(screen_map[:, :self.cfg.screen_input]), f)
        if self.screen_term is not None or self.in_g is not None or self.in_s is not None:
            f = F.leaky_relu_(f, LEAK)
        f = f.to(self.dtype)
        f0 = self.inc1(f, act=True)
        f1 = self.down1(f0, act=True)
        f = self.down2(f1, act=True)
        for a, b in self.mid:
            f = b.add(a(f, act=True), f)
        for (low, coarse, skip), fine in zip(self.merges, (f1, f0), strict=True):
            if low:
                u = upsample(coarse(f), fine.shape[-2:])
            else:
                u = coarse(_cl(upsample(f, fine.shape[-2:])))
            f = F.leaky_relu_(skip.add(fine, _cl(u)), LEAK)
        y = self.out(f)
        if r > 1:
            y = F.pixel_shuffle(y, r)
        if y.shape[-2:] != (h, w):
            y = y[..., :h, :w]
        y = y.float()
        out = image + y[:, :3]
        late = self.cells is not None or self.grade is not None  # the screen goes on after them
        if self.screen_layer is not None and not late:
            out = out.add_(self.screen_layer)
        if self.refine is not None:
            ra, rb, last = self.refine
            hidden = F.leaky_relu_(rb.add(_cl(y[:, :self.n_y]), ra(image)), LEAK)
            out = last.add(hidden, _cl(out))
        if self.grade is not None:
            columns, offset = self.grade  # out + m @ out + b as three fused multiply-adds
            graded = _cl(out + offset)
            for j, column in enumerate(columns):
                graded.addcmul_(column, out[:, j:j + 1])
            out = graded
        if self.cells is not None:  # each lattice cell flat
            out = _cl(cell_mean(out, self.cells))
        if self.screen_layer is not None and late:  # then the screen on top
            out = out.add_(self.screen_layer)
        if self.gated is not None and screen_map is not None:
            n_in = self.cfg.screen_input
            out = self.gated(out, y[:, self.n_y:], screen_map[:, :n_in], screen_map[:, n_in:])
        elif self.gated is not None and self.gated_inputs is not None:
            parts, term = self.gated_inputs  # the same on every frame: broadcast over the batch
            out = self.gated(out, y[:, self.n_y:], None, parts, term)
        return out  # channels-last, as forward_reference's
