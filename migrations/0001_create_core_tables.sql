-- The core schema: API keys and their audit log, tracked symbols, bars, backfill runs.

CREATE TABLE api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    -- SHA-256 of the raw key; the raw key is never stored.
    key_hash bytea NOT NULL,
    -- "mdw_" and the first characters of the key, to recognise it in lists and logs.
    key_prefix text NOT NULL,
    scopes text[] NOT NULL,
    active boolean NOT NULL DEFAULT true,
    expires_at timestamptz,
    allowed_cidrs cidr[] NOT NULL DEFAULT '{}',
    rate_limit_per_minute integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- After a rotation the previous key keeps working until previous_key_expires_at.
    previous_key_hash bytea,
    previous_key_expires_at timestamptz,
    -- Usage counters, folded in from the audit log (never one UPDATE per request).
    last_used_at timestamptz,
    request_count bigint NOT NULL DEFAULT 0,
    usage_counted_through bigint NOT NULL DEFAULT 0,
    CONSTRAINT api_keys_name_key UNIQUE (name),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT api_keys_scopes_valid CHECK (
        cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'admin']::text[]
    ),
    CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit_per_minute > 0)
);

CREATE UNIQUE INDEX api_keys_previous_key_hash_key
    ON api_keys (previous_key_hash) WHERE previous_key_hash IS NOT NULL;

-- One row per authenticated request, failed authentication and key lifecycle event.
-- key_id is not a foreign key: a deleted key's history stays.
CREATE TABLE api_key_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id bigint,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL,
    method text,
    route text,
    path text,
    status_code smallint,
    latency_ms integer,
    source_ip inet,
    request_id text,
    key_prefix text,
    reason text
);

CREATE INDEX api_key_audit_key_id_id_idx ON api_key_audit (key_id, id);
CREATE INDEX api_key_audit_occurred_at_idx ON api_key_audit (occurred_at);

CREATE TABLE tracked_symbols (
    symbol text PRIMARY KEY,
    asset_class text NOT NULL,
    timeframes text[] NOT NULL DEFAULT '{1d}',
    active boolean NOT NULL DEFAULT true,
    backfill_status text NOT NULL DEFAULT 'pending',
    last_backfill timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tracked_symbols_symbol_format CHECK (symbol ~ '^[A-Z0-9][A-Z0-9.]{0,14}$'),
    CONSTRAINT tracked_symbols_asset_class_valid CHECK (asset_class IN ('stock', 'etf', 'crypto')),
    CONSTRAINT tracked_symbols_timeframes_valid CHECK (
        cardinality(timeframes) > 0
        AND timeframes <@ ARRAY['1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w']::text[]
    ),
    CONSTRAINT tracked_symbols_backfill_status_valid CHECK (
        backfill_status IN ('pending', 'in_progress', 'completed', 'failed')
    )
);

CREATE TABLE bars (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    -- Start of the bar's window, UTC.
    time timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    -- Fractional for crypto.
    volume double precision NOT NULL,
    vwap double precision,
    trades integer,
    validated boolean NOT NULL,
    flags text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, time)
);

CREATE TABLE backfill_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol text NOT NULL,
    timeframe text NOT NULL,
    status text NOT NULL DEFAULT 'in_progress',
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    range_start date,
    range_end date,
    bars_written integer NOT NULL DEFAULT 0,
    provider_requests integer NOT NULL DEFAULT 0,
    error text,
    CONSTRAINT backfill_runs_status_valid CHECK (status IN ('in_progress', 'completed', 'failed'))
);

CREATE INDEX backfill_runs_symbol_timeframe_idx ON backfill_runs (symbol, timeframe, started_at DESC);
