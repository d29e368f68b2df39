"""`python -m hpcci`: the same command line as `hpcci`."""

from hpcci.cli import main

raise SystemExit(main())
