from rd.cli import main

raise SystemExit(main())
