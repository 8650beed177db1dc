"""The subject layout on disk, datasets, the sample-video synthesiser and importers."""
