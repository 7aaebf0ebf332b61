"""What the package needs of a Tinker service client, and of something that recovers runs."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .models import Checkpoint, TrainingRun
    from .policy import Policy
    from .recovery import Recovery

__all__ = ["check_service", "Recoverer"]

_CREATE_METHODS = ("create_training_client_from_state", "create_training_client_from_state_with_optimizer")


def check_service(service: Any) -> None:
    """Raise TypeError unless ``service`` can create training clients from a checkpoint.

    The two method names are the official SDK's (``tinker.ServiceClient``).
    """
    for method in _CREATE_METHODS:
        if not callable(getattr(service, method, None)):
            raise TypeError(
                f"service: {type(service).__name__} has no {method}(); pass a tinker.ServiceClient"
            )


class Recoverer(Protocol):
    """Something a Monitor can hand a corrupted run to; the ``Executor`` is the package's own."""

    def recover(
        self,
        run_id: str,
        service: Any,
        policy: Policy,
        *,
        config: Any = None,
        metadata: Any = None,
        last_checkpoint: Checkpoint | None = None,
        run: TrainingRun | None = None,
    ) -> Future[Recovery]:
        """Queue the recovery of ``run_id``; return a Future of its Recovery."""
        ...
