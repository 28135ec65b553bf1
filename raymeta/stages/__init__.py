"""The pipeline's stages, each a function of a :class:`~raymeta.config.schema.Config`: pretrain, smooth, train (the
single-process driver and the step code both drivers share), evaluate, baselines, export, report. The CLI, the
Ray drivers, the sweep trials and the tests all call these same functions."""
