"""Test helpers shared by the suite: settings against simulators, account seeding, worker processes."""
