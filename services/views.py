"""Moved to services/schemas/ (one module per context); kept while modules still import it here."""

from services.schemas.base import Schema
from services.schemas.jobs import JobError, JobExecutor, JobLogOut, JobOut

__all__ = ["Schema", "JobError", "JobExecutor", "JobLogOut", "JobOut"]
