"""Plans, usage and limits: the same capacities enforced on every protocol."""

from kantoor.quota.engine import PlanNotFound, QuotaEngine

__all__ = ["PlanNotFound", "QuotaEngine"]
