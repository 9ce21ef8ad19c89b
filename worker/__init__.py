"""The RQ side of the service: queues, thin jobs, the worker and the scheduler."""
