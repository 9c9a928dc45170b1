"""`python -m t5x_sbs.cli` == `t5x-sbs`."""
import sys

from t5x_sbs.cli import main

sys.exit(main())
