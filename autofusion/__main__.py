"""``python -m autofusion``: the same CLI as the ``autofusion`` command."""

from autofusion.cli import main

main()
