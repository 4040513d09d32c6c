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

__all__ = [
    "SLO_DEFAULTS",
    "ApiKind",
    "Assessment",
    "AssessmentSchedule",
    "AssessmentStatus",
    "BenchmarkEndpoint",
    "BenchmarkJob",
    "BenchmarkRequest",
    "BenchmarkRun",
    "CalibrationRecord",
    "DeploymentSlo",
    "JobKind",
    "JobStatus",
]
