"""hpcci: get containers from a GitHub repository onto HPC clusters, tested and trusted."""

__version__ = "0.1.0"
