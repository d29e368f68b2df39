#!/usr/bin/python3
"""`apptainer` and `singularity` on the local test cluster: the entry of the hpcci STAND-IN for Apptainer.

The real Apptainer cannot be installed on this machine; the apptainer_standin package next to this file is the
stand-in. scripts/stack/cluster.sh installs both into $STACK_DIR/cluster/sw/apptainer/lib/ and links
bin/apptainer and the singularity names to this file: Python puts the directory of the script's resolved path
first on sys.path, so the package imports with the system /usr/bin/python3 and nothing else installed.
"""

import sys

from apptainer_standin.cli import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
