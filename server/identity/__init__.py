"""Verified identity at both doors: people sign in through the organisation's OpenID Connect provider (browser
sessions), and remote MCP clients get OAuth tokens from grantkeeper as their authorization server (or present
JWTs from an external one). One concept per module; `models` holds the tables."""
