"""Examples of agents built on grantkeeper."""
