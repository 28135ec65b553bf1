"""Ray: distributed training (Ray Train), search spaces and sweeps (Ray Tune), and the whole pipeline
(``run_pipeline``) that chooses between the single-process and the distributed driver."""
