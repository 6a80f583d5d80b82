"""Datasets: load any common instruction dataset, detect and normalise it, validate, split, save.

``sources`` resolves what was asked for, ``readers`` and ``hub`` stream its rows, ``formats``
normalises them, ``scan`` validates a whole source, ``inspection`` and ``importer`` are the two
things done with it, and ``catalog`` keeps the imported datasets. No gradio here; heavy
libraries (transformers, datasets, pyarrow) load lazily, and ``tokens`` counts and renders with
``light_tokenizer`` (tokenizers + Jinja2, no torch) wherever a model has a ``tokenizer.json``.
"""

from garden.data.bundled import BundledDataset, list_bundled
from garden.data.catalog import (
    DatasetRecord,
    dataset_choices,
    delete_dataset,
    get_dataset,
    list_datasets,
    read_rows,
)
from garden.data.formats import FORMATS
from garden.data.importer import import_dataset
from garden.data.inspection import inspect_source
from garden.data.kinds import DATASET_KINDS, DatasetKind
from garden.data.preview import preview_samples
from garden.data.report import InspectReport, Issue
from garden.data.scan import ReadOptions, is_eval_row
from garden.data.tokens import render_samples
from garden.data.uploads import sanitize_filename, save_upload

__all__ = [
    "DATASET_KINDS",
    "FORMATS",
    "BundledDataset",
    "DatasetKind",
    "DatasetRecord",
    "InspectReport",
    "Issue",
    "ReadOptions",
    "dataset_choices",
    "delete_dataset",
    "get_dataset",
    "import_dataset",
    "inspect_source",
    "is_eval_row",
    "list_bundled",
    "list_datasets",
    "preview_samples",
    "read_rows",
    "render_samples",
    "sanitize_filename",
    "save_upload",
]
