-- Backfill status per (symbol, timeframe). tracked_symbols.backfill_status, last_backfill and
-- last_error stay as the symbol's roll-up over its timeframes, written by the backfill.

CREATE TABLE backfill_state (
    symbol text NOT NULL REFERENCES tracked_symbols (symbol) ON DELETE CASCADE,
    timeframe text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    -- When the last successful run finished; the next split check starts from its date.
    last_backfill timestamptz,
    -- The last failed run's error, cleared by the next success.
    last_error text,
    last_run_id bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT backfill_state_pkey PRIMARY KEY (symbol, timeframe),
    CONSTRAINT backfill_state_timeframe_valid CHECK (
        timeframe IN ('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w')
    ),
    CONSTRAINT backfill_state_status_valid CHECK (
        status IN ('pending', 'in_progress', 'completed', 'failed')
    )
);
