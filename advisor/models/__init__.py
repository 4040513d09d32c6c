"""Advisor models, one module per concept; import them here so Django finds them.

Modules: assessments, benchmarks, rollouts (each added by its issue). Several people add
models here in parallel: when `makemigrations --check` reports conflicting leaf migrations,
run `manage.py makemigrations --merge`.
"""

from advisor.models.assessments import (
    SLO_DEFAULTS,
    Assessment,
    AssessmentSchedule,
    AssessmentStatus,
    DeploymentSlo,
)
from advisor.models.benchmarks import (
    ApiKind,
    BenchmarkEndpoint,
    BenchmarkJob,
    BenchmarkRequest,
    BenchmarkRun,
    CalibrationRecord,
    JobKind,
    JobStatus,
)
from advisor.models.rollouts import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ChangeSource,
    ConfigChange,
    LedgerEntry,
    LedgerStatus,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    RolloutTarget,
    TargetStatus,
)

__all__ = [
    "ACTIVE_STATUSES",
    "SLO_DEFAULTS",
    "TERMINAL_STATUSES",
    "ApiKind",
    "Assessment",
    "AssessmentSchedule",
    "AssessmentStatus",
    "BenchmarkEndpoint",
    "BenchmarkJob",
    "BenchmarkRequest",
    "BenchmarkRun",
    "CalibrationRecord",
    "ChangeSource",
    "ConfigChange",
    "DeploymentSlo",
    "JobKind",
    "JobStatus",
    "LedgerEntry",
    "LedgerStatus",
    "Rollout",
    "RolloutEvent",
    "RolloutStatus",
    "RolloutTarget",
    "TargetStatus",
]
