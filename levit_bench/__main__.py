from levit_bench.cli import main

raise SystemExit(main())
