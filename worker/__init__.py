"""The RQ side of the service: the worker and the scheduler processes, and the jobs they run
themselves (reconciler, digest tick, purge). Queues and the send jobs are newsletter/queueing.py."""
