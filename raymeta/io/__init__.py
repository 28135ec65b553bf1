"""Files in and out: datasets, typed checkpoints (artifacts), result tables, run folders.

Imports only the core (``raymeta.errors``, ``raymeta.config``): nothing here knows the method or Ray.
"""
