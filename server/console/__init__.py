"""The operator's console: every account's health and the actions on it, for the dashboard, /accounts and the CLI."""
