"""The one transition table: what may follow what."""

from __future__ import annotations

import itertools

import pytest

from service.jobs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    JobStatus,
    can_move,
    sources_of,
)


def test_the_table_names_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_a_terminal_status_never_changes(terminal: JobStatus) -> None:
    assert TRANSITIONS[terminal] == frozenset()
    assert not any(can_move(terminal, to) for to in JobStatus)


def test_completed_and_failed_never_replace_each_other() -> None:
    assert not can_move(JobStatus.COMPLETED, JobStatus.FAILED)
    assert not can_move(JobStatus.FAILED, JobStatus.COMPLETED)


@pytest.mark.parametrize("active", sorted(ACTIVE_STATUSES))
def test_every_active_status_may_end_in_any_terminal_one(active: JobStatus) -> None:
    assert TRANSITIONS[active] >= TERMINAL_STATUSES
    assert can_move(active, JobStatus.CANCELLED)


def test_the_way_of_a_job_is_allowed_step_by_step() -> None:
    way = [
        JobStatus.QUEUED,
        JobStatus.SUBMITTING,
        JobStatus.SUBMITTED,
        JobStatus.IN_PROGRESS,
        JobStatus.COMPLETED,
    ]
    assert all(can_move(a, b) for a, b in itertools.pairwise(way))


def test_no_way_back_and_only_a_submit_refused_for_our_key_is_queued_again() -> None:
    # submitting -> queued: fal refused our key, nothing was created, dispatch paused.
    assert sources_of(JobStatus.QUEUED) == frozenset({JobStatus.SUBMITTING})
    assert not can_move(JobStatus.SUBMITTED, JobStatus.SUBMITTING)
    assert not can_move(JobStatus.IN_PROGRESS, JobStatus.SUBMITTED)


def test_only_submitting_may_move_to_itself() -> None:
    # Another submit attempt is an event; "fal says it still runs" is not.
    assert [s for s in JobStatus if can_move(s, s)] == [JobStatus.SUBMITTING]


def test_sources_of_is_the_table_read_backwards() -> None:
    for to in JobStatus:
        assert sources_of(to) == {s for s in JobStatus if to in TRANSITIONS[s]}
