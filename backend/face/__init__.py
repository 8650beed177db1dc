"""Face tracking, the person-specific face model (rig), and the UV rasteriser."""
