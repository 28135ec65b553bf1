"""raymeta: metamorphic networks (NeuMeta and the full-network recipe) on plain PyTorch, trained on Ray.

Layers by folder, each importing only those before it (tests/test_structure.py checks this):

    errors, seeds           the core: the error types; every seed derived from one function
    raymeta.method          the method, plain PyTorch: ResNet, smoothing, the INR hypernetwork, the metamorphic
                            network, the objective, configuration sampling, the stage schedule, presets
    raymeta.config          the typed configuration: schema, loading, checkpoint migration
    raymeta.io              files in and out: checkpoints (typed artifacts), datasets, result tables, run folders
    raymeta.stages          the pipeline's stages, each a function of a Config: pretrain, smooth, train,
                            evaluate, baselines, export, deploy, report
    raymeta.drivers         Ray: distributed training (Ray Train), sweeps (Ray Tune), the whole pipeline
    raymeta.cli             the ``raymeta`` command, which only parses and dispatches
"""
