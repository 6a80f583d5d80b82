"""Model Garden: `uv run app.py [--host H] [--port P] [--share] [--public-demo]`.

The same command as `model-garden ui`, with the same flags and the same one-line errors.
"""

from __future__ import annotations


def main() -> None:
    from garden.cli.main import ui

    ui.main(prog_name="app.py")


if __name__ == "__main__":
    main()
