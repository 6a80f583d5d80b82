"""Model Garden: `uv run app.py [--host H] [--port P] [--share]`."""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description="Start the Model Garden web app.")
    parser.add_argument("--host", default=None, help="interface to bind (default: API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: API_PORT, 7860)")
    parser.add_argument("--share", action="store_true", help="also open a Gradio share link")
    args = parser.parse_args()

    from garden.ui.server import launch

    launch(host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
