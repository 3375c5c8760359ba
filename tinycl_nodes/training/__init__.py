"""Training of the frozen extractor (optional extra: needs PyTorch; the nodes never import it)."""
