"""tinker-recovery: opt-in detection and checkpoint restart of corrupted Tinker training runs."""

import logging as _logging

from . import signals
from ._version import __version__
from .clock import ManualClock, SystemClock
from .config import DEFAULT_BASE_URL, Config
from .errors import *  # noqa: F403 - the whole hierarchy is public
from .errors import __all__ as _error_names
from .executor import Executor
from .handle import RunHandle
from .journal import Journal, ResumeItem, lineage_heads, read_journal, resume_plan
from .models import Checkpoint, Cursor, ParsedCheckpointTinkerPath, TrainingRun
from .monitor import Monitor
from .policy import Policy, Specific
from .recovery import Recovery
from .rest import RestClient
from .scheduler import RetryScheduler

__all__ = [
    "__version__",
    "signals",
    "Config",
    "DEFAULT_BASE_URL",
    "Policy",
    "Specific",
    "RestClient",
    "Executor",
    "Monitor",
    "RunHandle",
    "Recovery",
    "RetryScheduler",
    "SystemClock",
    "ManualClock",
    "Journal",
    "ResumeItem",
    "read_journal",
    "lineage_heads",
    "resume_plan",
    "TrainingRun",
    "Checkpoint",
    "Cursor",
    "ParsedCheckpointTinkerPath",
    *_error_names,
]

_logging.getLogger("tinker_recovery").addHandler(_logging.NullHandler())
