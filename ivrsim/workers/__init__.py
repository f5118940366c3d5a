"""Running calls (and later analysis jobs) in worker processes: the job queue, the API-side hub, the worker,
and the local workers ``ivrsim serve`` starts."""
