"""Pass 1 of tracking: landmarks, shot cuts, face segments and identities of every frame.

``scan_video`` decodes the video once and, per frame, runs FaceMesh (largest face), the shot/face
segmenter, dlib's 68-point predictor on the FaceMesh box (when asked, ``backend.face.shape68``) and
(on a few frames per segment) the identity signal; then groups the segments into people.
``people_sheet`` draws one row per person (thumbnails of their segments) for
``emo-avatar track --list-people``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from backend.face.identity import FaceDescriptor, PeopleResult, group_people, load_descriptor, shape_signature
from backend.face.landmarks import FaceMeshTracker
from backend.face.shape68 import Shape68Predictor, load_shape68
from backend.face.shots import MAX_GAP_S, Segment, SegmentTracker, frame_signature
from backend.face.video_io import VideoInfo, iter_frames, prefetch
from backend.images import write_png
from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel

log = logging.getLogger(__name__)

DESCRIBE_EVERY_S = 1.0
"""Seconds between identity descriptors within a segment (plus its first three detections)."""
DESCRIBE_FIRST = 3
"""Detections at the start of every segment that always get a descriptor."""
THUMB_SIDE = 96
PROGRESS_EVERY = 10


@dataclass
class Scan:
    """Everything pass 1 learns about a video.

    Attributes:
        points: per frame (478, 3) video px or None.
        several: number of frames with more than one face.
        segments: covering every frame; shot cuts in ``cuts``.
        people: segments grouped into identities.
        thumbnails: per segment, a (THUMB_SIDE, THUMB_SIDE, 3) uint8 face crop or None.
        seconds: wall seconds spent per signal ("landmarks", "cuts", "shape68", "identity").
        n_described: frames the identity signal ran on.
        points68: per frame (68, 2) dlib points (frame px) or None (no face); empty when the
            68-point predictor did not run.
    """

    points: list[np.ndarray | None]
    several: int
    segments: list[Segment]
    cuts: list[int]
    people: PeopleResult
    thumbnails: list[np.ndarray | None]
    seconds: dict[str, float] = field(default_factory=dict)
    n_described: int = 0
    points68: list[np.ndarray | None] = field(default_factory=list)

    @property
    def detected(self) -> np.ndarray:
        return np.array([p is not None for p in self.points])


def _thumbnail(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = points[:468, :2]
    lo, hi = p.min(0), p.max(0)
    c, half = (lo + hi) / 2, 0.7 * float((hi - lo).max())
    h, w = rgb.shape[:2]
    x0, y0 = int(max(c[0] - half, 0)), int(max(c[1] - half, 0))
    x1, y1 = int(min(c[0] + half, w)), int(min(c[1] + half, h))
    return cv2.resize(rgb[y0:y1, x0:x1], (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)


def scan_video(video: Path, info: VideoInfo, max_frames: int | None = None,
               progress: ProgressFn | None = None, should_stop: StopFn | None = None,
               total: int | None = None, clock: EtaClock | None = None,
               descriptor: FaceDescriptor | bool | None = True,
               shape68: Shape68Predictor | bool | None = False) -> Scan:
    """Pass 1 over ``video`` (see module doc).

    Args:
        descriptor: True = load dlib's descriptor (falls back to rig shape, logged, when it is
            missing); False = rig shape only; or a loaded ``FaceDescriptor``.
        shape68: True = load dlib's 68-point predictor and run it on every face (skipped, logged,
            when it is missing: ``Scan.points68`` stays empty); False = do not; or a loaded
            ``Shape68Predictor``.
    Raises:
        VideoError: unreadable video; Cancelled on request.
    """
    n_est = min(info.n_frames, max_frames) if max_frames else info.n_frames
    total = total or max(n_est, 1)
    clock = clock or EtaClock(total)
    desc = load_descriptor() if descriptor is True else (descriptor or None)
    signal = "descriptor" if desc is not None else "shape"
    pred68 = load_shape68() if shape68 is True else (shape68 or None)
    points68: list[np.ndarray | None] = []
    max_gap = max(round(MAX_GAP_S * info.fps), 1)
    every = max(round(DESCRIBE_EVERY_S * info.fps), 1)
    segmenter = SegmentTracker(max_gap)
    points: list[np.ndarray | None] = []
    feats: dict[int, list[np.ndarray]] = {}
    thumbs: dict[int, np.ndarray] = {}
    seconds = {"landmarks": 0.0, "cuts": 0.0, "shape68": 0.0, "identity": 0.0}
    several = 0
    n_described = 0
    seg = -1
    seg_detections = 0
    with FaceMeshTracker() as tracker:
        for i, rgb in enumerate(prefetch(iter_frames(video, max_frames))):
            check_cancel(should_stop)
            t0 = time.perf_counter()
            lm = tracker.process(rgb)
            t1 = time.perf_counter()
            sig = frame_signature(rgb)
            starts = segmenter.add(sig, lm.points)
            t2 = time.perf_counter()
            seconds["landmarks"] += t1 - t0
            seconds["cuts"] += t2 - t1
            if starts:
                seg += 1
                seg_detections = 0
            points.append(lm.points)
            several += lm.n_faces > 1
            if pred68 is not None:
                points68.append(pred68(rgb, lm.points) if lm.points is not None else None)
                t3 = time.perf_counter()
                seconds["shape68"] += t3 - t2
                t2 = t3
            if lm.points is not None:
                if seg_detections < DESCRIBE_FIRST or seg_detections % every == 0:
                    feat = desc(rgb, lm.points) if desc is not None else shape_signature(lm.points)
                    feats.setdefault(seg, []).append(feat)
                    n_described += 1
                    if seg not in thumbs:
                        thumbs[seg] = _thumbnail(rgb, lm.points)
                seg_detections += 1
            seconds["identity"] += time.perf_counter() - t2
            if progress is not None and i % PROGRESS_EVERY == 0:
                progress(ProgressUpdate(stage="track", step=i, total=total, eta=clock.eta(i),
                                        message="landmarks"))
        if tracker.searches:
            log.info("face too small for a whole-frame detection in %d frames; found it in a window of "
                     "the frame", tracker.searches)
    segments = segmenter.segments()
    detected = np.array([p is not None for p in points])
    seg_feats = [np.mean(feats[k], axis=0) if k in feats else None for k in range(len(segments))]
    seg_frames = [np.nonzero(detected[s.start:s.stop])[0] + s.start for s in segments]
    people = group_people(seg_feats, seg_frames, signal)
    return Scan(points=points, several=several, segments=segments, cuts=list(segmenter.cuts),
                people=people, thumbnails=[thumbs.get(k) for k in range(len(segments))],
                seconds=seconds, n_described=n_described, points68=points68)


def frame_ranges_text(frames: np.ndarray) -> str:
    """Sorted frame ids -> ``"0:98, 154:200"`` (B exclusive)."""
    f = np.asarray(frames, dtype=np.int64)
    if len(f) == 0:
        return "-"
    breaks = np.nonzero(np.diff(f) > 1)[0]
    starts = np.concatenate([[f[0]], f[breaks + 1]])
    stops = np.concatenate([f[breaks] + 1, [f[-1] + 1]])
    return ", ".join(f"{a}:{b}" for a, b in zip(starts.tolist(), stops.tolist(), strict=True))


def people_sheet(scan: Scan, out: Path, per_row: int = 6) -> Path:
    """One row per person: its number and up to ``per_row`` segment thumbnails; PNG at ``out``."""
    rows = []
    label_w = 60
    for p in scan.people.people:
        tiles = [scan.thumbnails[s] for s in p.segments if scan.thumbnails[s] is not None][:per_row]
        row = np.zeros((THUMB_SIDE, label_w + per_row * THUMB_SIDE, 3), np.uint8)
        cv2.putText(row, str(p.index), (12, THUMB_SIDE // 2 + 12), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                    (255, 255, 255), 2, cv2.LINE_AA)
        for k, t in enumerate(tiles):
            row[:, label_w + k * THUMB_SIDE: label_w + (k + 1) * THUMB_SIDE] = t
        rows.append(row)
    sheet = np.concatenate(rows, axis=0) if rows else np.zeros((THUMB_SIDE, label_w, 3), np.uint8)
    write_png(out, sheet)
    return Path(out)
