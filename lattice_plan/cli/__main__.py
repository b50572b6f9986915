"""``python -m lattice_plan.cli``: the ``lattice-plan`` command line."""

from lattice_plan.cli.main import main

raise SystemExit(main())
