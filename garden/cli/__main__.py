"""`python -m garden.cli`."""

from garden.cli.main import main

main()
