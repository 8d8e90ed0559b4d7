"""Moved to services/schemas/ (one module per context); kept while api/routes/jobs.py still imports it here."""

from services.schemas.jobs import JobSubmitIn

__all__ = ["JobSubmitIn"]
