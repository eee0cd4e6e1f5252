"""What the domain (intake, cancellation) refuses, independent of the door a request came by.

Each door maps these to its own error shape in one place: `/v1` to problem+json
(`service.errors`), `/fal/` to fal's bodies (`service.routes.fal_errors`).

DomainError
 ├── RequestRejected       every problem with the request at once (validation, callback URL,
 │                         Idempotency-Key), as `InputProblem`s with paths from the job request
 ├── IdempotencyKeyReused  the key already made a different job (`job_id`)
 ├── JobNotFound           no such job for this tenant
 ├── JobAlreadyFinished    the job (or fal's request) has already ended; nothing to cancel
 ├── NothingToRedeliver    the job has no callback delivery that could be sent again
 ├── UpstreamUnavailable   fal could not be asked (cancel), try again later
 ├── SpendCapExceeded      the job would take its tenant past a daily or monthly spend cap
 └── MediaStoreUnavailable a file could not be stored (large data URIs), try again later
"""

from __future__ import annotations

from collections.abc import Sequence

from service.validation import InputProblem


class DomainError(Exception):
    """Base of every refusal the domain raises; the message is safe to show the caller."""


class RequestRejected(DomainError):
    def __init__(self, problems: Sequence[InputProblem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the request.")


class IdempotencyKeyReused(DomainError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__("This Idempotency-Key was already used for a different request.")


class JobNotFound(DomainError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"No job {job_id!r}.")


class JobAlreadyFinished(DomainError):
    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"Job {job_id!r} has already finished ({status}).")


class NothingToRedeliver(DomainError):
    """No callback delivery of the job could be started again (none yet, or all in progress)."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        super().__init__(f"Job {job_id!r} has nothing to redeliver: {reason}.")


class UpstreamUnavailable(DomainError):
    """fal did not answer a call the domain needed; nothing was changed."""


class MediaStoreUnavailable(DomainError):
    """The media store refused a file the request needed stored; no job was recorded."""


class SpendCapExceeded(DomainError):
    """The job's estimated cost would take its tenant past a spend cap (TENANT_LIMITS)."""

    def __init__(
        self, period: str, spent_usd: float, cap_usd: float, cost_usd: float, resets_at: str
    ) -> None:
        self.period = period
        self.spent_usd = spent_usd
        self.cap_usd = cap_usd
        self.cost_usd = cost_usd
        self.resets_at = resets_at
        super().__init__(
            f"This job's estimated cost (${cost_usd:.2f}) would take the {period} spend "
            f"(${spent_usd:.2f} of ${cap_usd:.2f}) past its cap; it resets at {resets_at}."
        )
