"""A public demo's visitors, in ``garden/services``: each may change only its own work, and only
so much of it; a stranger's REST call may only read, and chat (issue 20, must-have 3)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import insert_running_job, private_settings

from garden.errors import AccessError, LimitError
from garden.services import datasets, training, visitors
from garden.services.datasets import DatasetSource, ImportRequest
from garden.services.visitors import Visitor

ALICE, BOB = Visitor.of_session("alice"), Visitor.of_session("bob")


@pytest.fixture(scope="module")
def demo(module_tmp: Path, default_model_path: Path) -> Any:
    return private_settings(
        module_tmp,
        default_model_path,
        public_demo=True,
        public_demo_max_datasets_per_visitor=1,
        public_demo_max_active_jobs=2,
    )


def facts(name: str) -> ImportRequest:
    return ImportRequest(source=DatasetSource(kind="bundled", value="garden_facts"), name=name)


def running_job(settings: Any, job_id: str, visitor: Visitor | None) -> None:
    """A run row as the manager writes it; nothing trains."""
    insert_running_job(settings, job_id)
    visitors.claim("job", job_id, visitor, settings=settings)


def one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 300, text
    return text


def test_a_visitor_deletes_only_its_own_dataset_and_imports_only_so_many(demo: Any) -> None:
    mine = datasets.import_dataset(facts("alice-facts"), settings=demo, visitor=ALICE)
    with pytest.raises(LimitError) as capped:
        datasets.import_dataset(facts("alice-more"), settings=demo, visitor=ALICE)
    assert "the most it allows (1)" in one_line(capped)
    with pytest.raises(AccessError) as refused:
        datasets.delete_dataset(mine.name, settings=demo, visitor=BOB)
    assert "made by someone else" in one_line(refused)
    assert datasets.get_dataset(mine.id, settings=demo).id == mine.id, "nothing was lost"
    datasets.delete_dataset(mine.name, settings=demo, visitor=ALICE)
    again = datasets.import_dataset(facts("alice-again"), settings=demo, visitor=ALICE)
    datasets.delete_dataset(again.id, settings=demo)  # the owner (CLI, a token) may delete anything


def test_a_visitor_stops_only_its_own_runs_and_queues_only_so_many(demo: Any) -> None:
    running_job(demo, "job-alice", ALICE)
    for act in (training.stop, training.cancel, training.resume):
        with pytest.raises(AccessError) as refused:
            act("job-alice", settings=demo, visitor=BOB)
        assert "made by someone else" in one_line(refused)
    dataset = datasets.import_dataset(facts("bob-facts"), settings=demo, visitor=BOB).id
    form = {"dataset": dataset, "max_steps": 1}
    with pytest.raises(LimitError) as mine:
        training.submit_from_web(form, settings=demo, visitor=ALICE)
    assert "You already have 1 run" in one_line(mine)
    running_job(demo, "job-owner", None)  # started from the CLI: counts toward the demo's total
    with pytest.raises(LimitError) as busy:
        training.submit_from_web(form, settings=demo, visitor=BOB)
    assert "This demo is busy: 2 runs" in one_line(busy)
    assert training.get("job-alice", settings=demo).status == "running"


def test_one_evaluation_and_one_export_at_a_time(demo: Any) -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        with visitors.in_flight("evaluation", settings=demo):
            started.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(10)
        with pytest.raises(LimitError) as busy, visitors.in_flight("evaluation", settings=demo):
            pass
        assert "Another evaluation is running" in one_line(busy)
        with visitors.in_flight("export", settings=demo):  # another kind of work has its slot
            pass
    finally:
        release.set()
        holder.join()
    with visitors.in_flight("evaluation", settings=demo):  # freed when the first one ended
        pass


@pytest.mark.parametrize(
    ("method", "path", "user", "allowed"),
    [
        ("GET", "/api/v1/datasets", None, True),
        ("POST", "/api/v1/chat", None, True),
        ("POST", "/api/v1/chat/stream", None, True),
        ("POST", "/api/v1/datasets", None, False),
        ("DELETE", "/api/v1/datasets/ds-1", None, False),
        ("POST", "/api/v1/training/jobs", None, False),
        ("POST", "/api/v1/training/jobs/job-1/cancel", None, False),
        ("POST", "/api/v1/evaluations", None, False),
        ("POST", "/api/v1/exports", None, False),
        ("POST", "/api/v1/training/jobs", "owner", True),
    ],
)
def test_a_demo_rest_call_without_a_token_only_reads_and_chats(
    demo: Any, method: str, path: str, user: str | None, allowed: bool
) -> None:
    if allowed:
        visitors.check_rest_write(demo, method, path, user)
    else:
        with pytest.raises(AccessError, match="read-only"):
            visitors.check_rest_write(demo, method, path, user)
    local = demo.model_copy(update={"public_demo": False})
    visitors.check_rest_write(local, method, path, user)  # a local app is not a demo


def test_what_a_visitor_is_making_counts_toward_its_cap_and_blocks_no_one_else(demo: Any) -> None:
    carol, dave = Visitor.of_session("carol"), Visitor.of_session("dave")
    with visitors.adding("dataset", carol, settings=demo):  # a long import, not yet saved
        with pytest.raises(LimitError), visitors.adding("dataset", carol, settings=demo):
            pass
        with visitors.adding("dataset", dave, settings=demo):  # another visitor goes on
            pass
    with visitors.adding("dataset", carol, settings=demo):  # freed: the first one ended
        pass
    local = demo.model_copy(update={"public_demo": False})
    with (
        visitors.adding("dataset", carol, settings=local),
        visitors.adding("dataset", carol, settings=local),
    ):
        pass  # off a demo nothing is counted
