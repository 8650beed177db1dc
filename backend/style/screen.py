"""Frame-locked screens: periodic marks of a look that stay put in the frame while the subject moves.

A halftone or line screen, or a regular canvas weave, is printed in frame coordinates: the same
pattern sits at the same pixels on every frame, whatever is under it. A fully convolutional
translator trained on randomly placed patches cannot know a patch's phase in that pattern, so it
learns a washed-out average of it. This module finds such a pattern in the references instead.

A frame-locked periodic pattern is a few sharp peaks in the reference's Fourier spectrum that the
source frame (the photograph or render the reference was painted over) does not have. Those peaks,
with a small neighbourhood that keeps the leakage of a period that does not divide the frame, are
the screen; its inverse transform is an additive layer (3, H, W). The translator is fitted on the
references minus the screen and the screen is added back to each rendered frame. Broadband
content (faces, hair, lines, paper grain) has no isolated peaks and stays with the translator, so
no keyframe's content is ever painted onto other frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ScreenSettings:
    """Thresholds of ``detect_screen``.

    Attributes:
        peak_ratio: a bin is a peak when its magnitude is this many times the median of its
            neighbourhood (``window`` x ``window`` bins).
        source_ratio: a bin of the source's spectrum this many times its neighbourhood's median
            is a periodic pattern of the content itself (a striped shirt); the reference's peaks
            at it and its harmonics are not a screen.
        min_frequency: only periods shorter than 1 / min_frequency px (cycles per px, radial).
        min_amplitude: smallest screen amplitude kept ([-1, 1] units per channel, peak).
        keep: half-width in bins of the neighbourhood kept around each peak (leakage).
        window: side of the median neighbourhood in bins.
        sibling_ratio: a weaker peak (this many times its neighbourhood's median) counts too when
            it has the period of a peak above ``peak_ratio`` in another direction: a crosshatch or
            dot screen repeats one period in two directions, and a keyframe with few darks shows
            the direction that only the darks carry weakly.
    """

    peak_ratio: float = 8.0
    sibling_ratio: float = 4.0
    source_ratio: float = 3.0
    min_frequency: float = 0.08
    min_amplitude: float = 0.03
    keep: int = 2
    window: int = 9


def _log_magnitude(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, H, W) -> (spectrum (C, H, W) complex, log of the channel-summed magnitude (H, W))."""
    spec = torch.fft.fft2(images - images.mean(dim=(-2, -1), keepdim=True))
    return spec, torch.log(spec.abs().sum(0) + 1e-6)


def _local_median(x: torch.Tensor, window: int) -> torch.Tensor:
    """Median of each (H, W) value's ``window`` x ``window`` neighbourhood (circular, as a spectrum is)."""
    r = window // 2
    padded = F.pad(x[None, None], (r, r, r, r), mode="circular")
    patches = F.unfold(padded, window)  # (1, window**2, H*W)
    return patches.median(dim=1).values.reshape(x.shape)


def _is_local_max(x: torch.Tensor) -> torch.Tensor:
    padded = F.pad(x[None, None], (1, 1, 1, 1), mode="circular")
    return x >= F.max_pool2d(padded, 3, stride=1)[0, 0]


def _radial_frequency(h: int, w: int) -> torch.Tensor:
    """(H, W) cycles per pixel of each FFT bin."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.fftfreq(w)[None, :]
    return torch.sqrt(fy**2 + fx**2)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    padded = F.pad(mask[None, None].float(), (radius,) * 4, mode="circular")
    return F.max_pool2d(padded, 2 * radius + 1, stride=1)[0, 0] > 0


HARMONICS = 4
"""A look's lines and quantisation turn a periodic pattern of the content into harmonics too."""


def _harmonics(peaks: torch.Tensor, order: int) -> torch.Tensor:
    """(H, W) mask of the FFT bins within one bin of k x each peak's frequency, k = 1..order."""
    h, w = peaks.shape
    out = torch.zeros_like(peaks)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    fy = torch.where(ys > h // 2, ys - h, ys)  # signed frequency indices
    fx = torch.where(xs > w // 2, xs - w, xs)
    for k in range(1, order + 1):
        out[(k * fy) % h, (k * fx) % w] = True
    return _dilate(out, 1)


def detect_screen(reference: torch.Tensor, sources: torch.Tensor,
                  settings: ScreenSettings | None = None) -> torch.Tensor | None:
    """The frame-locked periodic pattern of one reference, or None when it has none.

    Args:
        reference: (3, H, W) in [-1, 1], the painted frame.
        sources: (S, 3, H, W) in [-1, 1], what it was painted over (real frame, render).
        settings: ``ScreenSettings``.
    Returns:
        (3, H, W) additive layer with zero mean, or None.
    """
    s = settings or ScreenSettings()
    h, w = reference.shape[-2:]
    spec, logmag = _log_magnitude(reference.double())
    contrast = logmag - _local_median(logmag, s.window)
    radial = _radial_frequency(h, w)
    candidates = _is_local_max(logmag) & (radial >= s.min_frequency)
    peaks = candidates & (contrast > torch.log(torch.tensor(s.peak_ratio)))
    if bool(peaks.any()):
        periods = radial[peaks].unique()
        near = (radial[..., None] - periods).abs().amin(-1) <= 1.0 / max(h, w)  # within one bin
        peaks |= candidates & near & (contrast > torch.log(torch.tensor(s.sibling_ratio)))
    for src in sources:
        _, slog = _log_magnitude(src.double())
        content = slog - _local_median(slog, s.window) >= torch.log(torch.tensor(s.source_ratio))
        peaks &= ~_harmonics(content & (_radial_frequency(h, w) > 0), HARMONICS)
    if not bool(peaks.any()):
        return None
    layer = torch.fft.ifft2(spec * _dilate(peaks, s.keep)).real.float()
    if float(layer.abs().amax()) < s.min_amplitude:
        return None
    return layer


def screen_of_keyframes(references: torch.Tensor, sources: list[torch.Tensor],
                        settings: ScreenSettings | None = None) -> torch.Tensor | None:
    """The screen shared by all keyframes: each keyframe's, averaged (content peaks of one pose
    average out, a frame-locked pattern adds up); None unless every keyframe has one.

    Args:
        references: (K, 3, H, W) in [-1, 1]; sources: K tensors (S, 3, H, W), each keyframe's sources.
    Returns:
        (3, H, W) or None.
    """
    layers = [detect_screen(ref, src, settings) for ref, src in zip(references, sources, strict=True)]
    if any(layer is None for layer in layers):
        return None
    return torch.stack(layers).mean(0)  # type: ignore[arg-type]


PHASES = 2
"""Screen directions whose phase the translator is given (a crosshatch has two)."""
SCREEN_CHANNELS = 1 + 2 * PHASES
"""Input channels of a screen: the layer itself, then (cos, sin) of each direction's phase."""
MIN_PHASE_SHARE = 0.25
"""A second direction counts when its peak has at least this share of the first's magnitude."""


def screen_channel(screen: torch.Tensor) -> torch.Tensor:
    """(3, H, W) screen layer -> (1, H, W) its channel mean scaled to a peak of 1 (a network input)."""
    grey = screen.mean(0, keepdim=True)
    return grey / grey.abs().amax().clamp_min(1e-6)


def _signed(index: int, n: int) -> int:
    return index - n if index > n // 2 else index


def _fundamentals(spectrum: torch.Tensor, count: int, keep: int) -> list[tuple[int, int]]:
    """Up to ``count`` signed (fy, fx) bins of the strongest peaks of an (H, W) spectrum (complex,
    or a magnitude) that are neither the leakage, the mirror image nor a harmonic (2x-4x) of a
    stronger one."""
    h, w = spectrum.shape
    mag = spectrum.abs().clone()
    mag[0, 0] = 0
    chosen: list[tuple[int, int]] = []
    first = None
    for flat in torch.argsort(mag.flatten(), descending=True)[:64].tolist():
        f = (_signed(flat // w, h), _signed(flat % w, w))
        m = float(mag.flatten()[flat])
        if first is not None and m < MIN_PHASE_SHARE * first:
            break
        related = False
        for c in chosen:
            for k in range(1, HARMONICS + 1):
                for sign in (1, -1):
                    if max(abs(f[0] - sign * k * c[0]), abs(f[1] - sign * k * c[1])) <= keep:
                        related = True
        if related:
            continue
        chosen.append(f)
        first = m if first is None else first
        if len(chosen) == count:
            break
    return chosen


CANCELLED = 0.25
"""A direction counts as cancelled in the grey where the grey's spectrum keeps under this share of
the channels' mean magnitude at its bin (an RGB aperture grille, inks screened at other phases)."""


def _cancelled(spec: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """(3, H, W) complex spectra of a layer's channels and (H, W) the grey's -> (H, W) bool: the
    bins where the grey keeps under ``CANCELLED`` of the channels' mean magnitude."""
    return grey.abs() < CANCELLED * spec.abs().mean(0)


def _direction_magnitude(spec: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """Magnitudes to find a layer's directions by (``TranslatorConfig.screen_colour``): the grey's
    magnitude, but the channels' mean magnitude where the grey cancels a direction (``_cancelled``;
    arguments as its). A grey screen (its channels in phase) keeps the grey's magnitudes to the bit."""
    return torch.where(_cancelled(spec, grey), spec.abs().mean(0), grey.abs())


def _phase_signal(screen: torch.Tensor, spec: torch.Tensor, grey: torch.Tensor, f: tuple[int, int]
                  ) -> torch.Tensor:
    """(H, W) float64 signal whose phase the direction ``f`` is given by: the grey of the
    (3, H, W) layer, or its strongest channel at ``f`` where the grey cancels it (``_cancelled``;
    ``spec`` and ``grey`` as its)."""
    fy, fx = f[0] % spec.shape[1], f[1] % spec.shape[2]
    if not bool(_cancelled(spec[:, fy:fy + 1, fx:fx + 1], grey[fy:fy + 1, fx:fx + 1])):
        return screen.double().mean(0)
    return screen.double()[int(spec[:, fy, fx].abs().argmax())]


def _colour_fundamentals(spec: torch.Tensor, grey: torch.Tensor, count: int, keep: int
                         ) -> list[tuple[int, int]]:
    """``_fundamentals`` on ``_direction_magnitude(spec, grey)``: the directions the grey finds
    keep the sign (a peak or its mirror, which tie) that the grey alone gives them, so a screen
    without a cancelled direction gets the inputs it got before ``TranslatorConfig.screen_colour``."""
    by_grey = set(_fundamentals(grey, count, keep))
    return [(-f[0], -f[1]) if (-f[0], -f[1]) in by_grey else f
            for f in _fundamentals(_direction_magnitude(spec, grey), count, keep)]


def _bin_window(h: int, w: int, fy: int, fx: int, keep: int) -> torch.Tensor:
    """(H, W) mask of the FFT bins within ``keep`` of the signed bin (fy, fx), circularly."""
    dy = (torch.arange(h)[:, None] - fy + h // 2) % h - h // 2
    dx = (torch.arange(w)[None, :] - fx + w // 2) % w - w // 2
    return (dy.abs() <= keep) & (dx.abs() <= keep)


def _direction_mask(h: int, w: int, f: tuple[int, int], keep: int) -> torch.Tensor:
    """(H, W) mask of the bins within ``keep`` of +-k x ``f``, k = 1..``HARMONICS``."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for k in range(1, HARMONICS + 1):
        for sign in (1, -1):
            mask |= _bin_window(h, w, sign * k * f[0], sign * k * f[1], keep)
    return mask


def screen_parts(screen: torch.Tensor, directions: int = PHASES, colour: bool = False) -> torch.Tensor:
    """(3, H, W) screen layer -> ((directions + 1) * 3, H, W): the layer of each of its
    ``directions`` strongest directions (fundamental and harmonics), strongest first, zeros when
    it has fewer, then the rest (where the directions cross). They add up to ``screen``.

    A translator with screen gates (``TranslatorConfig.screen_gates``) scales each direction's
    layer by a factor it predicts per pixel, as a hatch that darkens only the shadows needs.
    ``colour``: as ``screen_channels``'s.
    """
    h, w = screen.shape[-2:]
    spec = torch.fft.fft2(screen.double())
    keep = ScreenSettings().keep
    taken = torch.zeros(h, w, dtype=torch.bool)
    parts = []
    grey = spec.mean(0)
    if colour:
        found = _colour_fundamentals(spec, grey, directions, keep)
    else:
        found = _fundamentals(grey, directions, keep)
    for f in found:
        mask = _direction_mask(h, w, f, keep) & ~taken
        taken |= mask
        parts.append(torch.fft.ifft2(spec * mask).real)
    parts += [torch.zeros(3, h, w, dtype=torch.float64)] * (directions - len(parts))
    rest = screen.double() - sum(parts, torch.zeros_like(screen, dtype=torch.float64))
    return torch.cat([*parts, rest]).to(screen)


def plane_wave(signal: torch.Tensor, peak: tuple[int, int]) -> torch.Tensor:
    """(H, W) real signal and the signed FFT bin of one of its periodic directions -> (H, W) unit
    phasor ``exp(i (2 pi (fy y + fx x) + phi0))`` of the plane wave that fits it best.

    The frequency is refined to a thousandth of a bin (three grid searches of the discrete-time
    Fourier transform's magnitude around the bin) and ``phi0`` is the phase there. A period that
    does not divide the frame leaks around its FFT peak, which bends the phase of the peak's
    analytic signal; a frame-locked screen's phase is a plane, and this recovers it."""
    h, w = signal.shape
    x = signal.double() - signal.double().mean()
    ys = torch.arange(h, dtype=torch.float64)
    xs = torch.arange(w, dtype=torch.float64)
    fy, fx = peak[0] / h, peak[1] / w
    for span, steps in ((1.0, 21), (0.1, 21), (0.01, 21)):
        gy = fy + torch.linspace(-span, span, steps, dtype=torch.float64) / h
        gx = fx + torch.linspace(-span, span, steps, dtype=torch.float64) / w
        ey = torch.exp(-2j * torch.pi * gy[:, None] * ys[None, :])  # (steps, H)
        ex = torch.exp(-2j * torch.pi * xs[:, None] * gx[None, :])  # (W, steps)
        mag = (ey @ x.to(ey.dtype) @ ex).abs()
        iy, ix = divmod(int(mag.argmax()), steps)
        fy, fx = float(gy[iy]), float(gx[ix])
    ramp = torch.exp(2j * torch.pi * (fy * ys[:, None] + fx * xs[None, :]))
    phi0 = torch.angle((x * ramp.conj()).sum())
    return ramp * torch.exp(1j * phi0)


def screen_channels(screen: torch.Tensor, channels: int = SCREEN_CHANNELS,
                    plane: bool = False, colour: bool = False) -> torch.Tensor:
    """(3, H, W) screen layer -> (``channels``, H, W) network inputs.

    The first is ``screen_channel``. With more, each further pair is (cos, sin) of the phase of one
    direction of the screen (its fundamental peak and ``ScreenSettings.keep`` bins around it,
    transformed back as an analytic signal), strongest first, zeros when the screen has fewer
    directions: a network can then switch each direction's marks on and off separately, as a
    crosshatch that adds its second direction only in the darks does. ``plane``: the phase of
    the plane wave that fits each direction (``plane_wave``, what gated screens are fitted with)
    instead of the analytic signal's own. ``colour``: directions found where the grey cancels them
    too, phased by their strongest channel (``_direction_magnitude``; ``TranslatorConfig.screen_colour``).
    """
    out = [screen_channel(screen)]
    n_phases = (channels - 1) // 2
    if n_phases:
        h, w = screen.shape[-2:]
        grey = screen.double().mean(0)
        grey_spec = torch.fft.fft2(grey)
        spec3 = torch.fft.fft2(screen.double()) if colour else None
        keep = ScreenSettings().keep
        found = (_colour_fundamentals(spec3, grey_spec, n_phases, keep) if spec3 is not None
                 else _fundamentals(grey_spec, n_phases, keep))
        for fy, fx in found:
            signal = _phase_signal(screen, spec3, grey_spec, (fy, fx)) if spec3 is not None else grey
            if plane:
                unit = plane_wave(signal, (fy, fx))
            else:
                analytic = torch.fft.ifft2(torch.fft.fft2(signal) * _bin_window(h, w, fy, fx, keep))
                unit = analytic / analytic.abs().clamp_min(1e-6 * float(analytic.abs().amax()) + 1e-12)
            out += [unit.real.float()[None], unit.imag.float()[None]]
        out += [torch.zeros(1, h, w)] * (1 + 2 * n_phases - len(out))
    return torch.cat(out).to(screen)
