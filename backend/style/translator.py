"""The style translator: a small image-to-image network applied after the avatar's generator.

It maps an unstyled render (plus optional guide channels) to the styled frame. It is trained in
minutes on random patches of a few keyframe pairs (``backend.style.fit``), after Texler et al.
2020, "Interactive Video Stylization Using Few-Shot Patch-Based Training": a fully convolutional
network sees only local context, so what it learns on one frame's patches holds on every other
frame, and lines follow each frame's own edges instead of texels.

Shape: a three-level U-Net (full, 1/2, 1/4 resolution) with residual blocks at 1/4, about 30 px
of receptive field at the finest level, which covers the filters of typical looks (edge-aware
smoothing, colour quantisation, outlines, paper grain), then an optional two-convolution head at
full resolution that sharpens the U-Net's change (hard colour steps and thin lines). The output
is the input image plus the predicted change, so an untrained translator is the identity. A
style's frame-locked screen (``backend.style.screen``) is added last.

Cost: the network runs in channels-last memory (oneDNN's fast layout for convolutions this
small), merges decoder inputs without concatenated copies (``split_conv``), and with
``low_merge`` convolves coarse features before upsampling them. In eval mode without
gradients on CPU (rendering), ``forward`` runs an ``InferencePlan`` instead: the same
convolutions with their weights sliced and packed for oneDNN once, each LeakyReLU and each
following addition (residual, decoder merge, output) fused into its convolution, and the
constant part of the input (the screen's channels) convolved once per size. It computes what
``forward_reference`` computes, up to float rounding (``bench/style.py --render-cost`` measures
the styled render against the unstyled one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backend.style.guides import uv_guides
from backend.style.screen import screen_channels, screen_parts
from backend.style.screen_gate import GatedScreen


@dataclass(frozen=True)
class TranslatorConfig:
    """Network size.

    Attributes:
        width: channels at full resolution (x2 at 1/2, x4 at 1/4).
        blocks: residual blocks at 1/4 resolution.
        guides: extra input channels besides RGB (see ``backend.style.guides``).
        unshuffle: the network works at 1/unshuffle of the image size on pixel-unshuffled input
            (each unshuffle x unshuffle block becomes channels) and its output is pixel-shuffled
            back, so the cost drops by about unshuffle**2 and the receptive field grows as much.
        refine: channels of a two-convolution head at full resolution that sharpens the coarse
            output (0: none); it sees the input, the coarse change and ``REFINE_FEATURES`` more
            shuffled feature channels.
        screen_input: input channels of the style's frame-locked screen (``set_screen``,
            ``backend.style.screen.screen_channels``), so the network can modulate the screen it
            adds (fade it where the look clips to paper or ink, switch one hatch direction on
            only in the darks): 0 without a screen; 1 (the layer only, styles written before the
            phase channels) or ``SCREEN_CHANNELS`` (the layer and each direction's phase).
        screen_gates: directions of the screen whose layer the network scales per pixel
            (``backend.style.screen_gate``): marks a look draws only in the darks or fades out on
            paper. 0: the screen is added as it is (styles written before the gates).
        screen_head: hidden channels of the gated screen's per-pixel head (0: none; only with
            ``screen_gates``).
        low_merge: 1 when each decoder merge convolves the coarse features at their own
            resolution and then upsamples the result (a quarter of the cost of convolving them
            upsampled, with the same weights' shapes); 0: upsample, then convolve.
    """

    width: int = 16
    blocks: int = 2
    guides: int = 0
    unshuffle: int = 1
    refine: int = 0
    screen_input: int = 0
    low_merge: int = 0
    screen_gates: int = 0
    screen_head: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TranslatorConfig:
        names = ("width", "blocks", "guides", "unshuffle", "refine", "screen_input", "low_merge",
                 "screen_gates", "screen_head")
        known = {k: int(d[k]) for k in names if k in d}
        return cls(**known)


def screen_inputs(screen: torch.Tensor, cfg: TranslatorConfig) -> torch.Tensor:
    """(3, H, W) screen -> (C, H, W), what a translator of ``cfg`` takes of it, in the layout of
    ``StyleTranslator.forward``'s ``screen_map``: the ``cfg.screen_input`` network channels
    (``screen_channels``; plane-wave phases when gated), then with ``cfg.screen_gates`` the
    ``screen_parts`` the gates scale."""
    gated = cfg.screen_gates > 0
    ch = screen_channels(screen, cfg.screen_input, plane=gated)
    return torch.cat([ch, screen_parts(screen, cfg.screen_gates)]) if gated else ch


REFINE_FEATURES = 4
"""Feature channels the coarse network hands to the full-resolution refinement head."""


LEAK = 0.2
"""Negative slope of every LeakyReLU of the translator."""


class ConvAct(nn.Sequential):
    """3x3 convolution (optionally strided) + LeakyReLU(``LEAK``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(LEAK, inplace=True))


class ResBlock(nn.Module):
    """x + conv(act(conv(x))), same channels and size."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvAct(ch, ch), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def split_conv(parts: list[torch.Tensor], conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` of the channel concatenation of ``parts`` (same size each), as a sum of one
    convolution per part over its slice of the weights, so no concatenated copy is made (in
    channels-last memory, a concatenation along channels is a strided copy of every pixel)."""
    out, c0 = None, 0
    for i, x in enumerate(parts):
        w = conv.weight[:, c0:c0 + x.shape[1]]
        c0 += x.shape[1]
        y = F.conv2d(x, w, conv.bias if i == 0 else None, conv.stride, conv.padding)
        out = y if out is None else out + y
    return out


class UpMerge(nn.Module):
    """Coarse features x2 up, merged with the skip by a 3x3 conv + LeakyReLU(0.2).

    ``low``: the coarse part of the conv runs at the coarse resolution before the upsampling
    (see ``TranslatorConfig.low_merge``); otherwise it runs on the upsampled features.
    """

    def __init__(self, coarse: int, skip: int, cout: int, low: bool = False) -> None:
        super().__init__()
        self.conv = ConvAct(coarse + skip, cout)
        self.low = low

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        conv = self.conv[0]
        c = coarse.shape[1]
        if self.low:
            low = F.conv2d(coarse, conv.weight[:, :c], conv.bias, 1, 1)
            y = _upsample(low, skip.shape[-2:]) + F.conv2d(skip, conv.weight[:, c:], None, 1, 1)
        else:
            y = split_conv([_upsample(coarse, skip.shape[-2:]), skip], conv)
        return self.conv[1](y)


class StyleTranslator(nn.Module):
    """Unstyled render (+ guides) -> styled image.

    Args:
        cfg: sizes (``TranslatorConfig``).

    Forward:
        image: (B, 3, H, W) in [-1, 1]; H and W any size (padded internally to a multiple of 4).
        guides: (B, cfg.guides, H, W) or None when ``cfg.guides == 0``.
        Returns (B, 3, H, W), about [-1, 1].

    Attributes:
        fused_inference: run an ``InferencePlan`` when it applies (eval mode, no gradients, float32
            on CPU, not inside ``torch.compile``); False: always ``forward_reference``.
    """

    fused_inference: bool = True

    def __init__(self, cfg: TranslatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or TranslatorConfig()
        r = self.cfg.unshuffle
        w, cin = self.cfg.width, (3 + self.cfg.guides + self.cfg.screen_input) * r * r
        self.inc = nn.Sequential(ConvAct(cin, w), ConvAct(w, w))
        self.down1 = ConvAct(w, 2 * w, stride=2)
        self.down2 = ConvAct(2 * w, 4 * w, stride=2)
        self.mid = nn.Sequential(*[ResBlock(4 * w) for _ in range(self.cfg.blocks)])
        low = bool(self.cfg.low_merge)
        self.up2 = UpMerge(4 * w, 2 * w, 2 * w, low)
        self.up1 = UpMerge(2 * w, w, w, low)
        extra = REFINE_FEATURES if self.cfg.refine else 0
        self.gated = (GatedScreen(self.cfg.screen_gates, self.cfg.screen_input, self.cfg.screen_head)
                      if self.cfg.screen_gates else None)
        controls = self.gated.controls if self.gated is not None else 0
        self.out = nn.Conv2d(w, (3 + extra + controls) * r * r, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.refine = None
        if self.cfg.refine:
            hidden = self.cfg.refine
            self.refine = nn.Sequential(ConvAct(6 + extra, hidden), nn.Conv2d(hidden, 3, 3, 1, 1))
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        self.register_buffer("screen", torch.zeros(0), persistent=False)
        self._cache = _DerivedCache()
        self.to(memory_format=torch.channels_last)  # oneDNN's fast layout for small convs

    def set_screen(self, screen: torch.Tensor | None) -> None:
        """Add a frame-locked pattern (3, H, W) to every output (``backend.style.screen``); None: none."""
        if screen is not None and (screen.ndim != 3 or screen.shape[0] != 3):
            raise ValueError(f"a screen is (3, H, W), got {tuple(screen.shape)}")
        self.screen = torch.zeros(0) if screen is None else screen.detach().float().clone()

    def _screen_cached(self, what: str, h: int, w: int, like: torch.Tensor, make) -> torch.Tensor:
        """``make()`` for the current screen, kept per (what, size, device, dtype): the screen only
        changes through ``set_screen`` or a move to another device or dtype, which change the key."""
        s = self.screen
        key = (what, h, w, like.device, like.dtype, s.data_ptr(), s.device, s.dtype, tuple(s.shape),
               torch.is_inference_mode_enabled())
        return self._cache.get(self._cache.screen, key, make)

    def screen_layer(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(3, h, w) the screen at this size, as ``like``'s device and dtype (a stored screen only)."""
        def make() -> torch.Tensor:
            screen = self.screen.to(like)
            if screen.shape[-2:] != (h, w):  # another render size: the pattern scales with the frame
                screen = F.interpolate(screen[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            return screen
        return self._screen_cached("layer", h, w, like, make)

    def _add_screen(self, out: torch.Tensor) -> torch.Tensor:
        if self.screen.numel() == 0:
            return out
        return out + self.screen_layer(out.shape[-2], out.shape[-1], out)

    def screen_map(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w): ``screen_inputs`` of the stored screen at this size, as ``like``'s device
        and dtype (a stored screen only); computed once per size."""
        def make() -> torch.Tensor:
            ch = screen_inputs(self.screen.to(like), self.cfg)[None]
            if ch.shape[-2:] != (h, w):
                ch = F.interpolate(ch, size=(h, w), mode="bilinear", align_corners=False)
            return ch
        return self._screen_cached("input", h, w, like, make)

    def forward(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                screen_map: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W). ``screen_map``: the screen of these crops while fitting,
        (B, screen_input [+ 3 * (screen_gates + 1)], H, W): the network's screen channels, then
        with gates ``screen_parts``; None: the stored screen's.

        Rendering (eval mode, no gradients) runs an ``InferencePlan`` when one applies, training
        runs ``forward_reference``; both compute the same thing up to float rounding."""
        plan = self.inference_plan(image, guides, screen_map)
        if plan is not None:
            return plan(image, guides, screen_map)
        return self.forward_reference(image, guides, screen_map)

    def forward_reference(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                          screen_map: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` op by op as the modules define it (what training differentiates)."""
        h, w = image.shape[-2:]
        image = image.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for small convs
        parts = [image]
        if self.cfg.guides and guides is not None:
            parts.append(guides)
        n_in = self.cfg.screen_input
        if screen_map is None and n_in and self.screen.numel():
            screen_map = self.screen_map(h, w, image).expand(image.shape[0], -1, h, w)
        channels = None
        if n_in:
            channels = (screen_map[:, :n_in] if screen_map is not None
                        else image.new_zeros(image.shape[0], n_in, h, w))
            parts.append(channels)
        x = torch.cat(parts, 1).contiguous(memory_format=torch.channels_last) if len(parts) > 1 else image
        r = self.cfg.unshuffle
        ph, pw = (-h) % (4 * r), (-w) % (4 * r)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if r > 1:
            x = F.pixel_unshuffle(x, r)
        f0 = self.inc(x)
        f1 = self.down1(f0)
        f2 = self.mid(self.down2(f1))
        y = self.out(self.up1(self.up2(f2, f1), f0))
        if r > 1:
            y = F.pixel_shuffle(y, r)
        y = y[..., :h, :w]
        extra = REFINE_FEATURES if self.cfg.refine else 0
        out = image + y[:, :3]
        if self.refine is not None:
            head, last = self.refine
            out = out + last(head[1](split_conv([image, y[:, :3 + extra]], head[0])))
        if self.gated is not None and screen_map is not None:
            return self.gated(out, y[:, 3 + extra:], channels, screen_map[:, n_in:])
        return self._add_screen(out)  # channels-last, so a (B, H, W, C) permute of it is contiguous

    def _weights_key(self) -> tuple:
        """Changes whenever a weight does (an optimiser step, ``load_state_dict``, a move)."""
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def inference_plan(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                       screen_map: torch.Tensor | None = None) -> InferencePlan | None:
        """The ``InferencePlan`` ``forward`` runs on these inputs, or None when it runs
        ``forward_reference`` (training, gradients on, not float32 on CPU, inside
        ``torch.compile``, guides missing, or ``fused_inference`` off). Plans are built on first
        use per input shape and rebuilt after any weight changes."""
        if (not self.fused_inference or self.training or torch.is_grad_enabled()
                or image.device.type != "cpu" or image.dtype != torch.float32 or image.ndim != 4
                or (self.cfg.guides and guides is None) or not _fused_ops_available()
                or torch.compiler.is_compiling()):
            return None
        if self.out.weight.dtype != torch.float32 or self.out.weight.device.type != "cpu":
            return None
        cache, weights = self._cache, self._weights_key()
        if weights != cache.weights:
            cache.plans, cache.weights = {}, weights
        own_map = screen_map is not None and self.cfg.screen_input > 0
        key = (tuple(image.shape), own_map, self.screen.data_ptr(), tuple(self.screen.shape),
               torch.is_inference_mode_enabled())
        return cache.get(cache.plans, key, lambda: InferencePlan(self, image.shape, own_map))

    def on_render(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Translate a render with the guides taken from its UV map: (B, 3, H, W) each -> (B, 3, H, W)."""
        return self(image, uv_guides(uv, self.cfg.guides))


class _DerivedCache:
    """What a translator derives from its weights and screen for inference (``InferencePlan``s,
    the screen at a size): never saved, and a copy of the module starts empty (it rebuilds)."""

    LIMIT = 8

    def __init__(self) -> None:
        self.screen: dict[tuple, torch.Tensor] = {}
        self.plans: dict[tuple, InferencePlan] = {}
        self.weights: tuple = ()

    def get(self, table: dict, key: tuple, make):
        hit = table.get(key)
        if hit is None:
            if len(table) >= self.LIMIT:
                table.clear()
            hit = table[key] = make()
        return hit

    def __deepcopy__(self, memo: dict) -> _DerivedCache:
        return _DerivedCache()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


_FUSED_OPS: bool | None = None


def _fused_ops_available() -> bool:
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


class _PackedConv:
    """One 3x3 convolution (padding 1) with its weights channels-last and reordered for oneDNN
    once (``input_size``: (B, C, H, W) it is packed for; other sizes still give the same result).

    ``conv(x, act)``: the convolution (+ LeakyReLU(``LEAK``) fused when ``act``);
    ``conv.add(x, other)``: the convolution + ``other`` (same shape as the output, or
    broadcastable over the batch), fused. ``x`` and ``other`` channels-last."""

    __slots__ = ("bias", "stride", "weight")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                 input_size: list[int]) -> None:
        w = weight.detach().contiguous(memory_format=torch.channels_last)
        self.stride = [stride, stride]
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(w, [1, 1], self.stride, [1, 1], 1,
                                                                   input_size)
        self.bias = None if bias is None else bias.detach().contiguous()

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
    Differences from ``forward_reference``, none of which changes what is computed:

    - every convolution runs through oneDNN's fused operator with prepacked weights (no per-call
      weight slicing or reordering); LeakyReLU runs inside the convolution, and additions that
      follow one (the residual blocks', the decoder merges', the refinement head's, the output's)
      are fused into it;
    - the first convolution and the refinement head's are split by input (image, guides, screen
      channels; image, coarse output), so no concatenated copy is made;
    - the screen channels are the same on every frame: their part of the first convolution (with
      its bias) is computed once, as are the screen layer at this size;
    - a batch runs ``CHUNK`` frames at a time, so a chunk's full-resolution features stay in the
      core's cache from one convolution to the next (at 128 px, 8 frames of 12 channels are 6 MB).

    Args:
        net: the translator (eval mode); its config and weights are read once.
        shape: (B, 3, H, W) of the images this plan runs on.
        screen_map: True when callers pass per-batch screen channels instead of the stored screen's.
    """

    CHUNK = 4
    """Frames per pass: the cpu preset's translator alone, one thread, 128 px, took 6.6 ms of CPU
    per frame at 4 against 7.3 at 8, 6.5 at 2 and 6.7 at 1 (docs/editing.md, render cost)."""

    def __init__(self, net: StyleTranslator, shape: torch.Size | tuple[int, ...], screen_map: bool) -> None:
        cfg = net.cfg
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
                   bias: bool = True) -> _PackedConv:
            return _PackedConv(conv.weight if weight is None else weight, conv.bias if bias else None,
                               conv.stride[0], size(cin, k))

        wd = cfg.width
        first = net.inc[0][0]
        n_img, n_g, n_s = 3 * r * r, cfg.guides * r * r, cfg.screen_input * r * r
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
            self.in_img = packed(first, n_img, 1, first.weight[:, :n_img], bias=self.screen_term is None)
            self.in_g = packed(first, n_g, 1, first.weight[:, n_img:n_img + n_g], False) if n_g else None
            self.in_s = packed(first, n_s, 1, first.weight[:, rest], False) if self.screen_input else None
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
        image = _cl(image)
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
        f0 = self.inc1(f, act=True)
        f1 = self.down1(f0, act=True)
        f = self.down2(f1, act=True)
        for a, b in self.mid:
            f = b.add(a(f, act=True), f)
        for (low, coarse, skip), fine in zip(self.merges, (f1, f0), strict=True):
            if low:
                u = _upsample(coarse(f), fine.shape[-2:])
            else:
                u = coarse(_cl(_upsample(f, fine.shape[-2:])))
            f = F.leaky_relu_(skip.add(fine, _cl(u)), LEAK)
        y = self.out(f)
        if r > 1:
            y = F.pixel_shuffle(y, r)
        if y.shape[-2:] != (h, w):
            y = y[..., :h, :w]
        out = image + y[:, :3]
        if self.screen_layer is not None:
            out = out.add_(self.screen_layer)
        if self.refine is not None:
            ra, rb, last = self.refine
            hidden = F.leaky_relu_(rb.add(_cl(y[:, :self.n_y]), ra(image)), LEAK)
            out = last.add(hidden, _cl(out))
        if self.gated is not None and screen_map is not None:
            n_in = self.cfg.screen_input
            out = self.gated(out, y[:, self.n_y:], screen_map[:, :n_in], screen_map[:, n_in:])
        elif self.gated is not None and self.gated_inputs is not None:
            parts, term = self.gated_inputs  # the same on every frame: broadcast over the batch
            out = self.gated(out, y[:, self.n_y:], None, parts, term)
        return out  # channels-last, as forward_reference's


def translator_state(translator: StyleTranslator) -> dict:
    """What a style file stores: ``{"config": {...}, "state": {name: tensor}}`` and, when the look
    has a frame-locked pattern, ``"screen"``: (3, H, W) (CPU tensors)."""
    blob = {
        "config": translator.cfg.to_dict(),
        "state": {k: v.detach().cpu().clone() for k, v in translator.state_dict().items()},
    }
    if translator.screen.numel():
        blob["screen"] = translator.screen.detach().cpu().clone()
    return blob


def translator_from_state(blob: dict) -> StyleTranslator:
    """Rebuild a translator from ``translator_state``'s dict (strict: every tensor must fit).

    Raises:
        ValueError: missing config/state or tensors that do not fit the config.
    """
    if not isinstance(blob, dict) or not isinstance(blob.get("state"), dict):
        raise ValueError("translator entry needs 'config' and 'state'")
    net = StyleTranslator(TranslatorConfig.from_dict(blob.get("config") or {}))
    try:
        net.load_state_dict(blob["state"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"translator weights do not fit its config: {str(e).splitlines()[0]}") from e
    screen = blob.get("screen")
    if screen is not None:
        if not isinstance(screen, torch.Tensor):
            raise ValueError("translator screen must be a tensor (3, H, W)")
        net.set_screen(screen)
    return net.eval().requires_grad_(False)
