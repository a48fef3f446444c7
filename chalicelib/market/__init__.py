"""The bottom layer every domain shares: the trading calendar, the bar sizes and the spelling of
symbols. It imports nothing of the domains above it (marketdata, backfill, symbols, ops)."""
