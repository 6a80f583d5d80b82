"""Datasets: load any common instruction dataset, detect and normalise it, validate, split, save.

No gradio here; heavy libraries (transformers, datasets, pyarrow) load lazily.
"""

from garden.data.formats import FORMATS
from garden.data.registry import (
    DatasetRecord,
    InspectReport,
    Issue,
    dataset_choices,
    delete_dataset,
    get_dataset,
    import_dataset,
    inspect_source,
    is_eval_row,
    list_datasets,
    read_rows,
    render_samples,
)
from garden.data.sources import list_bundled, sanitize_filename, save_upload

__all__ = [
    "FORMATS",
    "DatasetRecord",
    "InspectReport",
    "Issue",
    "dataset_choices",
    "delete_dataset",
    "get_dataset",
    "import_dataset",
    "inspect_source",
    "is_eval_row",
    "list_bundled",
    "list_datasets",
    "read_rows",
    "render_samples",
    "sanitize_filename",
    "save_upload",
]
