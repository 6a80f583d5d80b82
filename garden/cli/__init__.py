"""The `model-garden` command line: one module per command group, all calling ``garden.services``."""

from garden.cli.main import main

__all__ = ["main"]
