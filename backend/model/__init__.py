"""Networks: StyleGAN2 (pure torch), deformed neural texture, renderer, discriminators."""
