"""Files in and out: datasets, typed checkpoints (artifacts), result tables, run folders.

Imports only the core and the configuration (to save one): nothing here knows the method or Ray.
"""
