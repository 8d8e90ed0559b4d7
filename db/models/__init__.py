"""Every model, imported so that ``Base.metadata`` is complete for Alembic and tests."""

from db.models.auth import AuthAuditEvent, AuthSession, AuthToken, RateLimitHit
from db.models.backtests import Backtest
from db.models.jobs import Job, JobLogLine, JobSchedule
from db.models.market import MarketBar, MarketSyncCoverage
from db.models.portfolios import Portfolio, PortfolioMember
from db.models.research import ResearchSweep, ResearchTrial
from db.models.strategies import Strategy
from db.models.strategy_health import HealthReport
from db.models.trading import (
    TradingAccount,
    TradingCashFlow,
    TradingConfirmation,
    TradingDailyStat,
    TradingOrder,
    TradingPosition,
    TradingRequest,
    TradingRiskAssessment,
    TradingTrade,
)
from db.models.users import User, UserPreferences

__all__ = [
    "AuthAuditEvent",
    "AuthSession",
    "AuthToken",
    "Backtest",
    "HealthReport",
    "Job",
    "JobLogLine",
    "JobSchedule",
    "MarketBar",
    "MarketSyncCoverage",
    "Portfolio",
    "PortfolioMember",
    "RateLimitHit",
    "ResearchSweep",
    "ResearchTrial",
    "Strategy",
    "TradingAccount",
    "TradingCashFlow",
    "TradingConfirmation",
    "TradingDailyStat",
    "TradingOrder",
    "TradingPosition",
    "TradingRequest",
    "TradingRiskAssessment",
    "TradingTrade",
    "User",
    "UserPreferences",
]
