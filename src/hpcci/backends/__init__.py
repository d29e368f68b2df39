"""One seam per outside system: builders, registry, s3, ssh, schedulers, launchers, runtime, github.

Each is a Protocol or a table plus its implementations; only hpcci/wiring.py picks the real ones.
"""
