"""raymeta: metamorphic networks (NeuMeta and the full-network recipe) on plain PyTorch, trained on Ray.

Layers, each importing only those before it (tests/test_structure.py checks this):

    errors, config          the error types; the typed configuration
    raymeta.io              files in and out: checkpoints (typed artifacts), datasets, result tables, run folders
    raymeta.method          the method itself: ResNet, smoothing, the INR hypernetwork, the metamorphic network
    raymeta.stages          the pipeline's stages, each a function of a Config: pretrain, smooth, train,
                            evaluate, baselines, export, report
    raymeta.drivers         Ray: distributed training (Ray Train), sweeps (Ray Tune), the whole pipeline
    raymeta.cli             the ``raymeta`` command, which only parses and dispatches
"""
