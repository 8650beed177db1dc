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
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from backend.imaging.coords import position_channels
from backend.style.cell_grade import CellGrade, ink_shares
from backend.style.frame_jitter import FrameJitter
from backend.style.frame_partition import FramePartition
from backend.style.guides import uv_guides
from backend.style.lattice import CellMap, Lattice, cell_mean
from backend.style.palette_dither import PaletteDither
from backend.style.position_grade import PositionGrade
from backend.style.screen import screen_channels, screen_parts
from backend.style.screen_gate import GatedScreen
from backend.style.steady import SteadyFilter

if TYPE_CHECKING:
    from backend.style.inference_plan import InferencePlan


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
        grade: control points per side of the colour grade that varies over the frame
            (``backend.style.position_grade``), applied to the network's output before the
            lattice and the screen; 0: none (styles written before it).
        source_flag: 1 when the network reads one more input channel, a constant plane saying
            what its input is: ``RENDER`` for the avatar's render, ``PHOTOGRAPH`` for a video
            frame (``with_source``). The fit shows each input with its own flag; the renderer shows
            every render as a ``PHOTOGRAPH`` (``StyleTranslator.forward`` adds the plane), so the
            render gets what the video frames were taught, the look alone, while the render pairs
            still shape the weights both share. It is read as the last guide channel
            (``guides_in``). 0: none (styles written before it).
        cell_input: 1 when the network reads the image averaged over the lattice's cells
            (``set_lattice``) instead of the image itself: where a look recolours each cell from
            its mean colour (a pixel-art palette), the network then learns one colour function of
            the cell's mean instead of approximating the mean from the raw pixels.
            0: the image itself (styles written before it, and styles without a lattice).
        screen_colour: 1 when the screen's directions are found on its channels where its grey
            cancels them (an RGB aperture grille; ``backend.style.screen.CANCELLED``); 0: on its
            grey only (styles written before it).
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
    grade: int = 0
    source_flag: int = 0
    cell_input: int = 0
    screen_colour: int = 0

    @property
    def guides_in(self) -> int:
        """Guide channels the network reads: the UV guides, then the source flag's plane."""
        return self.guides + self.source_flag

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TranslatorConfig:
        names = ("width", "blocks", "guides", "unshuffle", "refine", "screen_input", "low_merge",
                 "screen_gates", "screen_head", "grade", "source_flag", "cell_input", "screen_colour")
        known = {k: int(d[k]) for k in names if k in d}
        return cls(**known)


PHOTOGRAPH = 1.0
"""The source flag of a video frame, and of every render a renderer shows
(``TranslatorConfig.source_flag``)."""
RENDER = -1.0
"""The source flag of the avatar's render paired with a target while fitting."""


def source_plane(like: torch.Tensor, flag: float) -> torch.Tensor:
    """(B, 1, H, W) filled with ``flag``, for ``like``'s (B, C, H, W) batch, device and dtype."""
    return like.new_full((like.shape[0], 1, *like.shape[-2:]), flag)


def with_source(inputs: torch.Tensor, cfg: TranslatorConfig, flag: float) -> torch.Tensor:
    """(B, 3 + cfg.guides, H, W) network inputs -> (B, 3 + cfg.guides_in, H, W): with
    ``cfg.source_flag`` the ``flag`` plane (``RENDER`` or ``PHOTOGRAPH``) appended; else unchanged."""
    if inputs.shape[1] != 3 + cfg.guides:
        raise ValueError(f"inputs have {inputs.shape[1]} channels, expected RGB + {cfg.guides} guides")
    return torch.cat([inputs, source_plane(inputs, flag)], 1) if cfg.source_flag else inputs


def screen_inputs(screen: torch.Tensor, cfg: TranslatorConfig) -> torch.Tensor:
    """(3, H, W) screen -> (C, H, W), what a translator of ``cfg`` takes of it, in the layout of
    ``StyleTranslator.forward``'s ``screen_map``: the ``cfg.screen_input`` network channels
    (``screen_channels``; plane-wave phases when gated), then with ``cfg.screen_gates`` the
    ``screen_parts`` the gates scale."""
    gated, colour = cfg.screen_gates > 0, bool(cfg.screen_colour)
    ch = screen_channels(screen, cfg.screen_input, plane=gated, colour=colour)
    return torch.cat([ch, screen_parts(screen, cfg.screen_gates, colour=colour)]) if gated else ch


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


def cell_channels(image: torch.Tensor, cells: CellMap | None) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, H, W) channels-last: the image averaged over the lattice's
    ``cells``, what the network reads with ``TranslatorConfig.cell_input``; without a lattice, the
    image itself."""
    return (image if cells is None else cell_mean(image, cells)).contiguous(memory_format=torch.channels_last)


def upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size), bilinear (what every decoder merge uses)."""
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
            y = upsample(low, skip.shape[-2:]) + F.conv2d(skip, conv.weight[:, c:], None, 1, 1)
        else:
            y = split_conv([upsample(coarse, skip.shape[-2:]), skip], conv)
        return self.conv[1](y)


class StyleTranslator(nn.Module):
    """Unstyled render (+ guides) -> styled image.

    Args:
        cfg: sizes (``TranslatorConfig``).

    Forward:
        image: (B, 3, H, W) in [-1, 1]; H and W any size (padded internally to a multiple of 4).
        guides: (B, cfg.guides_in, H, W), or None when ``cfg.guides_in == 0`` (with the source
            flag, guides without its plane read ``PHOTOGRAPH``: ``flagged``).
        Returns (B, 3, H, W), about [-1, 1].

    Attributes:
        fused_inference: run an ``InferencePlan`` when it applies (eval mode, no gradients, float32
            on CPU, not inside ``torch.compile``); False: always ``forward_reference``.
        low_precision: run that plan's convolutions in bfloat16 where the CPU computes it natively
            (``backend.style.inference_plan.bf16_native``; float32 elsewhere). Off by default, so
            fitting and its decisions stay float32; ``backend.render.Renderer`` turns it on.
    """

    fused_inference: bool = True
    low_precision: bool = False
    steady: SteadyFilter | None = None
    """The temporal filter a renderer runs over consecutive styled frames (``backend.style.steady``);
    None: each frame as the network gives it (styles written before the filter)."""
    dither: PaletteDither | None = None
    """The palette a renderer dots each finished frame with, after the steady filter, for a
    dispersed-dot look (``backend.style.palette_dither``); None: the frames as they are."""
    frame_jitter: FrameJitter | None = None
    """The frame-locked shifts of the look's rows and columns (``backend.style.frame_jitter``),
    put on every whole frame ``forward`` gives; None: none (styles written before it)."""
    cell_grade: CellGrade | None = None
    """The affine grade of a graded mosaic's cell means (``backend.style.cell_grade``): on every
    whole frame ``forward`` gives, its graded cells take the grade of the input's mean under them,
    its inked cells the mosaic's ink, the rest keep the network's output; None: the network's
    output everywhere."""

    def __init__(self, cfg: TranslatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or TranslatorConfig()
        r = self.cfg.unshuffle
        w, cin = self.cfg.width, (3 + self.cfg.guides_in + self.cfg.screen_input) * r * r
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
        self.grade = PositionGrade(self.cfg.grade) if self.cfg.grade else None
        self.register_buffer("screen", torch.zeros(0), persistent=False)
        self.lattice: Lattice | FramePartition | None = None
        self._cache = _DerivedCache()
        self.to(memory_format=torch.channels_last)  # oneDNN's fast layout for small convs

    def set_screen(self, screen: torch.Tensor | None) -> None:
        """Add a frame-locked pattern (3, H, W) to every output (``backend.style.screen``); None: none."""
        if screen is not None and (screen.ndim != 3 or screen.shape[0] != 3):
            raise ValueError(f"a screen is (3, H, W), got {tuple(screen.shape)}")
        self.screen = torch.zeros(0) if screen is None else screen.detach().float().clone()

    def set_lattice(self, lattice: Lattice | FramePartition | None) -> None:
        """Average every output over the cells of a frame-locked lattice (``backend.style.lattice``)
        or of a mosaic of any cell shape (``backend.style.frame_partition``), before the screen is
        added; None: no cells."""
        self.lattice = lattice
        self._cache.cells = {}

    def cell_map(self, h: int, w: int, device: torch.device) -> CellMap | None:
        """The stored lattice's cells at an (h, w) render (computed once per size), or None."""
        if self.lattice is None:
            return None
        lattice = self.lattice
        return self._cache.get(self._cache.cells, (h, w, device, lattice),
                               lambda: CellMap.of(lattice.cell_index(h, w)).to(device))

    def grade_fields(self, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The position grade over a whole (h, w) frame, as ``like``'s device and dtype:
        (1, 3, 3, h, w) matrix change and (1, 3, h, w) offset (``PositionGrade.fields``)."""
        return self.grade.fields(position_channels(h, w, like))

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
                screen_map: torch.Tensor | None = None, cells: CellMap | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W). ``screen_map``: the screen of these crops while fitting,
        (B, screen_input [+ 3 * (screen_gates + 1)], H, W): the network's screen channels, then
        with gates ``screen_parts``; None: the stored screen's. ``cells``: the lattice cells of
        these crops while fitting; None: the stored lattice's at this size (``cell_map``).
        ``positions``: (B, 2, H, W) where the crops' pixels were in their frame, in [-1, 1], while
        fitting (``position_channels``); None: whole frames.

        ``guides``: (B, cfg.guides_in, H, W), or without the source flag's plane (``cfg.guides``
        channels or None), which then reads ``PHOTOGRAPH`` (``flagged``).

        Rendering (eval mode, no gradients) runs an ``InferencePlan`` when one applies, training
        runs ``forward_reference``; both compute the same thing up to float rounding. A style with
        a ``frame_jitter`` gets it on whole frames (no ``cells`` or ``positions``), after either."""
        guides = self.flagged(image, guides)
        whole = cells is None and positions is None
        plan = self.inference_plan(image, guides, screen_map) if whole else None
        out = (plan(image, guides, screen_map) if plan is not None
               else self.forward_reference(image, guides, screen_map, cells, positions))
        if whole and self.cell_grade is not None:
            out = self._graded(out, image)
        return self.frame_jitter.apply(out) if whole and self.frame_jitter is not None else out

    def _graded(self, out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``out`` (B, 3, H, W) with the graded cells of ``cell_grade`` taken from ``image``'s means
        and its inked cells painted."""
        h, w = image.shape[-2:]
        cells = self.cell_map(h, w, image.device)
        if cells is None:
            raise ValueError("a cell grade needs the style's cells (a lattice or a partition)")
        grade = self.cell_grade
        kinds = self._cache.get(self._cache.cells, ("kinds", h, w, image.device, grade),
                                lambda: grade.kinds(h, w, image.device))
        shares = self._cache.get(self._cache.cells, ("shares", h, w, image.device, grade),
                                 lambda: (ink_shares(cells, kinds, h, w, grade.sides),))[0]
        return grade.apply(out, image, cells, kinds, shares)

    def forward_reference(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                          screen_map: torch.Tensor | None = None, cells: CellMap | None = None,
                          positions: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` op by op as the modules define it (what training differentiates)."""
        guides = self.flagged(image, guides)
        h, w = image.shape[-2:]
        if cells is None:
            cells = self.cell_map(h, w, image.device)
        if self.cfg.cell_input:
            image = cell_channels(image, cells)
        image = image.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for small convs
        parts = [image]
        if self.cfg.guides_in and guides is not None:
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
        if self.grade is not None:
            pos = position_channels(h, w, out) if positions is None else positions
            out = self.grade(out, pos).contiguous(memory_format=torch.channels_last)
        if cells is not None:
            out = cell_mean(out, cells)
        if self.gated is not None and screen_map is not None:
            return self.gated(out, y[:, 3 + extra:], channels, screen_map[:, n_in:])
        return self._add_screen(out)  # channels-last, so a (B, H, W, C) permute of it is contiguous

    def flagged(self, image: torch.Tensor, guides: torch.Tensor | None) -> torch.Tensor | None:
        """The guides as the network reads them: with ``cfg.source_flag``, guides without the
        flag's plane (``cfg.guides`` channels, or None) get a ``PHOTOGRAPH`` plane appended, how a
        renderer shows a render; guides with it (``cfg.guides_in`` channels) stay as they are."""
        if not self.cfg.source_flag or (guides is not None and guides.shape[1] == self.cfg.guides_in):
            return guides
        plane = source_plane(image, PHOTOGRAPH)
        return plane if guides is None else torch.cat([guides, plane], 1)

    def _weights_key(self) -> tuple:
        """Changes whenever a weight does (an optimiser step, ``load_state_dict``, a move)."""
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def inference_plan(self, image: torch.Tensor, guides: torch.Tensor | None = None,
                       screen_map: torch.Tensor | None = None) -> InferencePlan | None:
        """The ``InferencePlan`` ``forward`` runs on these inputs, or None when it runs
        ``forward_reference`` (training, gradients on, not float32 on CPU, inside
        ``torch.compile``, guides missing, or ``fused_inference`` off). Plans are built on first
        use per input shape and rebuilt after any weight changes."""
        # imported here: inference_plan imports this module
        from backend.style.inference_plan import InferencePlan, bf16_native, fused_ops_available

        if (not self.fused_inference or self.training or torch.is_grad_enabled()
                or image.device.type != "cpu" or image.dtype != torch.float32 or image.ndim != 4
                or (self.cfg.guides_in and guides is None) or not fused_ops_available()
                or torch.compiler.is_compiling()):
            return None
        if self.out.weight.dtype != torch.float32 or self.out.weight.device.type != "cpu":
            return None
        cache, weights = self._cache, self._weights_key()
        if weights != cache.weights:
            cache.plans, cache.weights = {}, weights
        own_map = screen_map is not None and self.cfg.screen_input > 0
        dtype = torch.bfloat16 if self.low_precision and bf16_native() else torch.float32
        key = (tuple(image.shape), own_map, self.screen.data_ptr(), tuple(self.screen.shape), self.lattice,
               torch.is_inference_mode_enabled(), dtype)
        return cache.get(cache.plans, key, lambda: InferencePlan(self, image.shape, own_map, dtype))

    def on_render(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Translate a render with the guides taken from its UV map: (B, 3, H, W) each -> (B, 3, H, W)."""
        return self(image, uv_guides(uv, self.cfg.guides))


class _DerivedCache:
    """What a translator derives from its weights and screen for inference (``InferencePlan``s,
    the screen at a size): never saved, and a copy of the module starts empty (it rebuilds)."""

    LIMIT = 8

    def __init__(self) -> None:
        self.screen: dict[tuple, torch.Tensor] = {}
        self.cells: dict[tuple, CellMap] = {}
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


def translator_state(translator: StyleTranslator) -> dict:
    """What a style file stores: ``{"config": {...}, "state": {name: tensor}}``; when the look
    has a frame-locked pattern, ``"screen"``: (3, H, W) (CPU tensors); when it is made of
    frame-locked cells, ``"lattice"``: ``Lattice.to_dict()``, or for cells of any shape
    ``"partition"``: ``FramePartition.to_tensor()`` (H, W) int32; with a temporal filter, ``"steady"``:
    ``SteadyFilter.to_dict()``; for a dispersed-dot look, ``"dither"``: ``PaletteDither.to_dict()``;
    for a look with a frame-locked jitter, ``"jitter"``: ``FrameJitter.to_dict()``; for a graded
    mosaic, ``"cell_grade"``: ``CellGrade.to_dict()``."""
    blob = {
        "config": translator.cfg.to_dict(),
        "state": {k: v.detach().cpu().clone() for k, v in translator.state_dict().items()},
    }
    if translator.screen.numel():
        blob["screen"] = translator.screen.detach().cpu().clone()
    if isinstance(translator.lattice, FramePartition):
        blob["partition"] = translator.lattice.to_tensor()
    elif translator.lattice is not None:
        blob["lattice"] = translator.lattice.to_dict()
    if translator.steady is not None:
        blob["steady"] = translator.steady.to_dict()
    if translator.dither is not None:
        blob["dither"] = translator.dither.to_dict()
    if translator.frame_jitter is not None:
        blob["jitter"] = translator.frame_jitter.to_dict()
    if translator.cell_grade is not None:
        blob["cell_grade"] = translator.cell_grade.to_dict()
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
    lattice = blob.get("lattice")
    if lattice is not None:
        if not isinstance(lattice, dict):
            raise ValueError("translator lattice must be a dict of size, period and offset")
        net.set_lattice(Lattice.from_dict(lattice))
    if blob.get("partition") is not None:
        if lattice is not None:
            raise ValueError("a translator has a lattice or a partition, not both")
        net.set_lattice(FramePartition.from_tensor(blob["partition"]))
    if blob.get("steady") is not None:
        net.steady = SteadyFilter.from_dict(blob["steady"])
    if blob.get("dither") is not None:
        net.dither = PaletteDither.from_dict(blob["dither"])
    if blob.get("jitter") is not None:
        net.frame_jitter = FrameJitter.from_dict(blob["jitter"])
    if blob.get("cell_grade") is not None:
        if net.lattice is None:
            raise ValueError("a translator's cell grade needs its lattice or partition")
        net.cell_grade = CellGrade.from_dict(blob["cell_grade"])
    return net.eval().requires_grad_(False)
