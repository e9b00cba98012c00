"""Keeping tokens fresh: when to refresh, one refresh per grant across workers, and the reactive retry."""
