"""The tools agents see. Each is a thin typed function: validated arguments in, a structured result out.

Canonical names are dotted (`slack.read_channel`); over MCP they are exposed as `slack_read_channel` unless
GRANTKEEPER_TOOL_NAMES=dotted, because Claude Desktop and the Anthropic API reject names with dots. The machinery
they share is in `tools/toolset.py`; which tools a server offers, in `tools/registry.py`.
"""
