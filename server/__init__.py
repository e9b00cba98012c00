"""grantkeeper's server: accounts, tokens, retries and results — everything between a tool and a provider."""
