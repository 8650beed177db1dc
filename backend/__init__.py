"""Emo-Avatar Studio backend: tracking, the Emo-Avatar model, training, editing, rendering, service.

Never imports bpy. Heavy packages (torch, mediapipe, cv2) are imported by the submodules that
need them, so ``import backend`` stays cheap.
"""

__version__ = "0.1.0"
