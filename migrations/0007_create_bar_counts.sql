-- Bars and validated bars per (symbol, timeframe), so GET /api/v1/status sums one row per unit
-- instead of counting every bar. Triggers keep the counts exact in the transaction of every
-- write to bars, whoever makes it: the backfill's COPY and upsert, a manual DELETE, TRUNCATE.

CREATE TABLE bar_counts (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    bars bigint NOT NULL,
    validated_bars bigint NOT NULL,
    CONSTRAINT bar_counts_pkey PRIMARY KEY (symbol, timeframe)
);

-- Writers wait from here to the commit, so the backfill below and the triggers see the same bars.
LOCK TABLE bars IN SHARE MODE;

-- Inserts and deletes: one statement-level pass over the rows the statement wrote (its
-- transition table), so a bulk write costs one aggregate, not one trigger call per bar. Each
-- change is added to its unit's row (a delete adds negative counts; a unit emptied keeps its row
-- at 0), units in key order, so two statements that touch several units cannot deadlock on
-- their counts.
CREATE FUNCTION count_bar_changes() RETURNS trigger LANGUAGE plpgsql AS $count$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO bar_counts AS c (symbol, timeframe, bars, validated_bars)
        SELECT symbol, timeframe, count(*), count(*) FILTER (WHERE validated)
        FROM new_bars
        GROUP BY symbol, timeframe
        ORDER BY symbol, timeframe
        ON CONFLICT (symbol, timeframe) DO UPDATE
        SET bars = c.bars + EXCLUDED.bars, validated_bars = c.validated_bars + EXCLUDED.validated_bars;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO bar_counts AS c (symbol, timeframe, bars, validated_bars)
        SELECT symbol, timeframe, -count(*), -count(*) FILTER (WHERE validated)
        FROM old_bars
        GROUP BY symbol, timeframe
        ORDER BY symbol, timeframe
        ON CONFLICT (symbol, timeframe) DO UPDATE
        SET bars = c.bars + EXCLUDED.bars, validated_bars = c.validated_bars + EXCLUDED.validated_bars;
    ELSE
        DELETE FROM bar_counts;
    END IF;
    RETURN NULL;
END
$count$;

CREATE FUNCTION count_bar_update() RETURNS trigger LANGUAGE plpgsql AS $count$
BEGIN
    IF OLD.symbol = NEW.symbol AND OLD.timeframe = NEW.timeframe THEN
        UPDATE bar_counts
        SET validated_bars = validated_bars + NEW.validated::integer - OLD.validated::integer
        WHERE symbol = NEW.symbol AND timeframe = NEW.timeframe;
    ELSE
        INSERT INTO bar_counts AS c (symbol, timeframe, bars, validated_bars)
        SELECT * FROM (VALUES
            (OLD.symbol, OLD.timeframe, -1::bigint, -OLD.validated::integer::bigint),
            (NEW.symbol, NEW.timeframe, 1::bigint, NEW.validated::integer::bigint)
        ) AS change (symbol, timeframe, bars, validated_bars)
        ORDER BY symbol, timeframe
        ON CONFLICT (symbol, timeframe) DO UPDATE
        SET bars = c.bars + EXCLUDED.bars, validated_bars = c.validated_bars + EXCLUDED.validated_bars;
    END IF;
    RETURN NULL;
END
$count$;

CREATE TRIGGER bars_count_inserts AFTER INSERT ON bars
    REFERENCING NEW TABLE AS new_bars
    FOR EACH STATEMENT EXECUTE FUNCTION count_bar_changes();
-- Updates are counted row by row, and only the rare ones that move a count: a bar whose validated
-- flag flips, or that moves to another unit. The WHEN test runs before any call, so the common
-- update (new prices, the same flag: a re-backfill) queues nothing and stores no copy of its
-- rows, which a transition table would.
CREATE TRIGGER bars_count_updates AFTER UPDATE ON bars
    FOR EACH ROW
    WHEN (OLD.validated IS DISTINCT FROM NEW.validated
          OR OLD.symbol IS DISTINCT FROM NEW.symbol
          OR OLD.timeframe IS DISTINCT FROM NEW.timeframe)
    EXECUTE FUNCTION count_bar_update();
CREATE TRIGGER bars_count_deletes AFTER DELETE ON bars
    REFERENCING OLD TABLE AS old_bars
    FOR EACH STATEMENT EXECUTE FUNCTION count_bar_changes();
CREATE TRIGGER bars_count_truncates AFTER TRUNCATE ON bars
    FOR EACH STATEMENT EXECUTE FUNCTION count_bar_changes();

INSERT INTO bar_counts (symbol, timeframe, bars, validated_bars)
SELECT symbol, timeframe, count(*), count(*) FILTER (WHERE validated)
FROM bars
GROUP BY symbol, timeframe;
