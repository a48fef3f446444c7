-- Bars are stored as traded (unadjusted) and split-adjusted on read: the `adjusted_bars` view
-- divides every price of a bar by the product of the ratios of the splits executed after it
-- (and multiplies its volume by it), as Polygon's `adjusted=true` does. A split no longer
-- changes a stored row, so it no longer needs a re-fetch of the symbol's history.
--
-- Nothing here rewrites `bars`: the columns below are added with constant defaults (a catalog
-- change) to tables of one row per unit or per split, so the locks are held for milliseconds.
-- The bars stored before this migration were fetched split-adjusted; their units are marked
-- `split_adjusted` and served as they are until their next backfill re-fetches them unadjusted
-- and marks them `unadjusted`, in the transaction that writes them. That conversion goes unit
-- by unit: an interrupted one leaves its unit as it was, to be converted by the next run, and
-- readers see either the old rows or the new ones, never a mix.

-- A product of doubles, for the cumulative ratio of several splits.
CREATE AGGREGATE product(double precision) (
    SFUNC = float8mul,
    STYPE = double precision,
    PARALLEL = SAFE
);

-- The instant a split takes effect: midnight New York of its execution date (splits are of
-- stocks and ETFs, whose trading day is New York's). Bars from then on are in post-split shares.
ALTER TABLE splits
    ADD COLUMN effective_at timestamptz
    GENERATED ALWAYS AS (execution_date::timestamp AT TIME ZONE 'America/New_York') STORED;

CREATE INDEX splits_symbol_effective_at_idx ON splits (symbol, effective_at);

-- How a unit's stored prices are expressed. Existing units hold split-adjusted prices; every
-- unit written from now on holds traded prices.
ALTER TABLE backfill_state
    ADD COLUMN stored_prices text NOT NULL DEFAULT 'split_adjusted',
    ADD CONSTRAINT backfill_state_stored_prices_valid
        CHECK (stored_prices IN ('split_adjusted', 'unadjusted'));
ALTER TABLE backfill_state ALTER COLUMN stored_prices SET DEFAULT 'unadjusted';

-- Split-adjusted bars. Per (symbol, timeframe) the splits in effect by now become two sorted
-- arrays, computed once per unit a query reads (the planner memoizes the lateral subquery):
-- `bounds`, when each split takes effect, and `factors`, where factors[k + 1] is the product
-- of the ratios of the splits after the k-th, the divisor of a bar with k splits behind it
-- (width_bucket's binary search finds k). A unit with no split, or still holding
-- split-adjusted prices, gets no arrays and divides by 1. Volumes are multiplied by the same
-- factor; trade counts do not change.
--
-- A bar's prices are in the shares of its last trading day: only a week can hold a split (a
-- split takes effect at midnight, where days start), and a week is stored in the shares of its
-- last day, so its divisor is taken at its end, six days after its Sunday start.
CREATE VIEW adjusted_bars AS
SELECT b.symbol, b.timeframe, b.time,
       b.open / coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS open,
       b.high / coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS high,
       b.low / coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS low,
       b.close / coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS close,
       b.volume * coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS volume,
       b.vwap / coalesce(f.factors[width_bucket(p.at, f.bounds) + 1], 1.0) AS vwap,
       b.trades, b.validated, b.flags, b.updated_at
FROM bars AS b
CROSS JOIN LATERAL (
    SELECT CASE WHEN b.timeframe = '1w' THEN b.time + interval '6 days' ELSE b.time END AS at
) AS p
CROSS JOIN LATERAL (
    SELECT array_agg(r.effective_at ORDER BY r.effective_at) AS bounds,
           array_agg(r.remaining ORDER BY r.effective_at) AS factors
    FROM (
        SELECT s.effective_at,
               product(s.split_to / s.split_from) OVER (ORDER BY s.effective_at DESC) AS remaining
        FROM splits AS s
        WHERE s.symbol = b.symbol
          AND s.effective_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM backfill_state AS st
              WHERE st.symbol = b.symbol
                AND st.timeframe = b.timeframe
                AND st.stored_prices = 'split_adjusted'
          )
    ) AS r
) AS f;
