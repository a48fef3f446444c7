-- API keys: tell the rotated-out key apart from the current one, and count a key's requests in
-- the last minute from the audit log (the rate limit) without scanning its whole history.

-- The display prefix of the key that previous_key_hash belongs to. The request middleware
-- knows a caller's key by id and display prefix (the authorizer's context), never by hash, so
-- this is how it tells the current key from the one still in its rotation grace period.
ALTER TABLE api_keys ADD COLUMN previous_key_prefix text;

-- The rate-limit window: requests that reached a view (the middleware sets `reason` on the
-- ones it refused itself), newest first per key. The table is young when this runs, so a plain
-- (transactional) build is fine.
CREATE INDEX api_key_audit_rate_window_idx ON api_key_audit (key_id, occurred_at)
    WHERE event = 'request' AND reason IS NULL;
