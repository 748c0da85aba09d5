from tce_ipfs.cli import main

raise SystemExit(main())
