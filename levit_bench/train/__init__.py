"""Training and evaluation: ImageFolder data, the DeiT-style trainer with distillation, top-1/top-5."""
