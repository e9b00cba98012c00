"""A Slack → GitHub triage agent on grantkeeper: the way to write an agent that keeps working for days while
tokens expire, rotate and get revoked, and providers fail (see README.md beside this file)."""

from examples.triage_agent.agent import AgentConfig, AgentStats, TriageAgent
from examples.triage_agent.state import AgentState, Report, StateFile

__all__ = ["AgentConfig", "AgentState", "AgentStats", "Report", "StateFile", "TriageAgent"]
