"""Editions of the digest: the schedule, planning deliveries, edition state, sending a chunk."""
