"""``python -m bridge.cli``: the same as the ``bridge`` console script."""

from . import main

main()
