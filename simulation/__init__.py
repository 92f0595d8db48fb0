"""A replayable city-day: the real services on a simulated clock, dispatch policies side by side, a scorecard.

Only the CLI imports it (`fieldpool simulate`); it drives dispatch.tickets, technicians and workload in-process
against a PostgreSQL database and a Redis of its own.
"""
