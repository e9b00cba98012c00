"""Test helpers only the suite uses: settings against simulators, the database parametrisation, probes and holds.
(Seeding a vault and running worker fleets live in simulators/, shared with the benchmarks.)"""
