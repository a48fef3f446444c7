"""Serverless operations: the backfill planner and worker, the audit archive, and what every
function logs and measures."""
