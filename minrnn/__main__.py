"""`python -m minrnn ...` is the same as the `minrnn` command."""
import sys

from .cli import main

sys.exit(main())
