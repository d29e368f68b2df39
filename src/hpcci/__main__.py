from hpcci.cli import main

raise SystemExit(main())
