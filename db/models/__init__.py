"""Every model, imported so that ``Base.metadata`` is complete for Alembic and tests."""

from db.models.auth import AuthAuditEvent, AuthSession, AuthToken, RateLimitHit
from db.models.users import User, UserPreferences

__all__ = ["AuthAuditEvent", "AuthSession", "AuthToken", "RateLimitHit", "User", "UserPreferences"]
