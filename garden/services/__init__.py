"""The one API of every front end (Gradio tabs, CLI, REST): typed calls over the engine.

One module per use case: ``datasets``, ``training``, ``chat``, ``models``, ``carbon``. Each
exposes plain functions that take an optional ``settings`` and return frozen pydantic views
(``JobView``, ``DatasetView``, ``ModelView``, ``ChatStats``, ``CarbonSummary`` …), so no front
end ever reads a store row or a dict by key. Errors are ``garden.errors.GardenError``s.
"""
