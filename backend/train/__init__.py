"""Stage-1 training, stage-2 editing, losses, checkpoints and presets."""
