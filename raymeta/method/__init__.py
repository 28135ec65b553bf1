"""The method itself: the ResNet, BatchNorm folding, channel smoothing, the INR hypernetwork and the
metamorphic network it generates, weight averaging and the health signals. Plain PyTorch; no files, no Ray."""
