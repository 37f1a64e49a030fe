import sys

from badapple_jax.cli import main

sys.exit(main())
