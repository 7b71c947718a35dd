from ctas7.cli import main

raise SystemExit(main())
