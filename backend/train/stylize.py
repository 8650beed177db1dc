"""The built-in looks under their trainer-side name: ``backend.looks`` is where they live.

Kept so that ``from backend.train.stylize import LOOKS, stylize_image`` goes on working; scoring
code (``backend.metrics``) imports ``backend.looks`` directly.
"""

from backend.looks import LOOKS, apply_look, stylize_image

__all__ = ["LOOKS", "apply_look", "stylize_image"]
