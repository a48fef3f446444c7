-- Backfill messages the planner has queued, one row per identity (kind, target, timeframe,
-- window): a repeated plan finds its identities here and queues nothing again, and the worker
-- marks each one done, so a redelivered message that already succeeded changes nothing.
-- `target` is a symbol (kind 'symbol') or a market, 'stocks' or 'crypto' (kind 'grouped_daily').

CREATE TABLE backfill_plan_messages (
    kind text NOT NULL,
    target text NOT NULL,
    timeframe text NOT NULL,
    -- The market date the message brings its target up to.
    window_date date NOT NULL,
    planned_at timestamptz NOT NULL DEFAULT now(),
    -- Set once SQS accepted the message; rows still NULL are sent by the next plan.
    sent_at timestamptz,
    completed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    CONSTRAINT backfill_plan_messages_pkey PRIMARY KEY (kind, target, timeframe, window_date),
    CONSTRAINT backfill_plan_messages_kind_valid CHECK (kind IN ('symbol', 'grouped_daily')),
    CONSTRAINT backfill_plan_messages_timeframe_valid CHECK (
        timeframe IN ('1m', '5m', '15m', '30m', '1h', '4h', '1d', '1w')
    )
);

-- The archiver prunes old rows by age.
CREATE INDEX backfill_plan_messages_planned_at_idx ON backfill_plan_messages (planned_at);
