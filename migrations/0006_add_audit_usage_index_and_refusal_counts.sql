-- API keys under load: usage read from the audit log without writes, and refusals of unknown
-- keys counted per minute instead of one row each.

-- Listing keys reads `request_count` and `last_used_at` as the folded counters plus the request
-- rows the archive job has not folded yet (id above usage_counted_through): a count and a
-- newest-row probe on this index, with no write and no row lock on the read path.
CREATE INDEX api_key_audit_requests_idx ON api_key_audit (key_id, id) WHERE event = 'request';

-- How many attempts a row stands for: 1, except for the aggregated refusals of unknown keys.
ALTER TABLE api_key_audit ADD COLUMN attempts integer NOT NULL DEFAULT 1;

-- The UTC minute an aggregated row counts attempts for; NULL on every row of its own.
ALTER TABLE api_key_audit ADD COLUMN aggregate_minute timestamptz;

-- One aggregated row per minute, key prefix, reason and source address (NULL prefix: the
-- minute's attempts beyond the prefixes it records one by one; NULL source: not known, as in
-- the token authorizer). The upsert of a refusal finds its row through this index.
CREATE UNIQUE INDEX api_key_audit_refusal_minute_key
    ON api_key_audit (aggregate_minute, key_prefix, reason, source_ip) NULLS NOT DISTINCT
    WHERE aggregate_minute IS NOT NULL;
