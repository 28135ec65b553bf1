"""raymeta: metamorphic networks (NeuMeta and the full-network recipe) on plain PyTorch."""
