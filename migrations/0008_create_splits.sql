-- Stock splits the warehouse knows, served by GET /v3/reference/splits in Polygon's shape.
-- One row per (symbol, execution date): Polygon never lists two splits of one ticker on one day.
-- `split_to` shares for every `split_from` (a 4-for-1 split: from 1, to 4).
CREATE TABLE splits (
    symbol text NOT NULL,
    execution_date date NOT NULL,
    split_from double precision NOT NULL,
    split_to double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT splits_pkey PRIMARY KEY (symbol, execution_date),
    CONSTRAINT splits_ratio_positive CHECK (split_from > 0 AND split_to > 0)
);

-- Listings across tickers by date (the default order of the endpoint).
CREATE INDEX splits_execution_date_idx ON splits (execution_date, symbol);
