"""Model Garden: fine-tune open LLMs, chat with them, and measure their carbon cost."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("model-garden")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
