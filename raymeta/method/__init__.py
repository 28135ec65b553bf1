"""The method itself: the ResNet, BatchNorm folding, channel smoothing, the INR hypernetwork and the
metamorphic network it generates; its training algorithm (the objective, configuration sampling, the stage
schedule and block initialisation); weight averaging and the health signals. Plain PyTorch; no files, no Ray."""
