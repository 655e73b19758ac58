import sys

from lars_jax.sweep.cli import main

sys.exit(main())
