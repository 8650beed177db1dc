"""Image helpers shared by training and scoring: tensor/uint8 conversion and labelled grids.

They sit below both ``backend.train`` and ``backend.metrics``, so scoring code needs no trainer.
"""
