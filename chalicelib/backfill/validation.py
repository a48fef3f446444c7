"""Bar validation: every bar is kept and gets a set of flags; `validated` means no severe flag.

Flags are computed as a bit mask per bar (one tight loop, no objects per bar), so a million
minute bars validate in about a second; the repository turns masks into the stored `flags`
array and `validated` boolean. docs/DATA_QUALITY.md explains each flag and threshold.

Severe flags mark a bar that cannot be right as delivered (its prices contradict each other,
a price is zero or negative, the volume is negative, or it does not start on its timeframe's
grid). Informational flags mark a bar that is unusual but may well be real (a crash or a
squeeze moves price and volume like a bad print does), so they never hide a bar from readers
who ask for validated bars only.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from chalicelib.config import Settings
from chalicelib.market.calendar import NEW_YORK, market_date
from chalicelib.market.timeframes import TIMEFRAME_SECONDS

OHLC_INCONSISTENT = "ohlc_inconsistent"
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
MISALIGNED_TIMESTAMP = "misaligned_timestamp"
PRICE_JUMP = "price_jump"
VOLUME_SPIKE = "volume_spike"

FLAG_NAMES: tuple[str, ...] = (
    OHLC_INCONSISTENT,
    NON_POSITIVE_PRICE,
    NEGATIVE_VOLUME,
    MISALIGNED_TIMESTAMP,
    PRICE_JUMP,
    VOLUME_SPIKE,
)
"""Every flag, in bit order: flag `FLAG_NAMES[i]` is bit `1 << i` of a mask."""

FLAG_BITS: dict[str, int] = {name: 1 << index for index, name in enumerate(FLAG_NAMES)}
SEVERE_FLAGS: frozenset[str] = frozenset(
    {OHLC_INCONSISTENT, NON_POSITIVE_PRICE, NEGATIVE_VOLUME, MISALIGNED_TIMESTAMP}
)
INFORMATIONAL_FLAGS: frozenset[str] = frozenset(FLAG_NAMES) - SEVERE_FLAGS
SEVERE_MASK = sum(FLAG_BITS[name] for name in SEVERE_FLAGS)

_OHLC = FLAG_BITS[OHLC_INCONSISTENT]
_NON_POSITIVE = FLAG_BITS[NON_POSITIVE_PRICE]
_NEGATIVE_VOLUME = FLAG_BITS[NEGATIVE_VOLUME]
_MISALIGNED = FLAG_BITS[MISALIGNED_TIMESTAMP]
_JUMP = FLAG_BITS[PRICE_JUMP]
_SPIKE = FLAG_BITS[VOLUME_SPIKE]

_MS_PER_DAY = 86_400_000
# The NYSE open, 09:30 New York, in ms after midnight UTC: in summer (EDT) and winter (EST).
_OPEN_SUMMER_MS = (13 * 60 + 30) * 60_000
_OPEN_WINTER_MS = (14 * 60 + 30) * 60_000
_SUNDAY = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BarPrices(Protocol):
    """What validation reads from a bar: Polygon's field names, `t` in ms UTC."""

    @property
    def t(self) -> int: ...
    @property
    def o(self) -> float: ...
    @property
    def h(self) -> float: ...
    @property
    def l(self) -> float: ...  # noqa: E743 - Polygon's name for the low
    @property
    def c(self) -> float: ...
    @property
    def v(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a price move or a volume counts as unusual (settings VALIDATION_*, whose defaults
    are written once, in `chalicelib.config`)."""

    max_jump_pct: float
    volume_spike_factor: float
    volume_window: int

    @classmethod
    def default(cls) -> Thresholds:
        """The thresholds of an environment that sets none of VALIDATION_*."""
        return cls.from_settings(Settings.from_env({}))

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            max_jump_pct=settings.validation_max_jump_pct,
            volume_spike_factor=settings.validation_volume_spike_factor,
            volume_window=settings.validation_volume_window,
        )


@dataclass(frozen=True, slots=True)
class PriorBars:
    """The stored bars just before the first bar being validated, so an incremental run flags
    exactly what a full run would: the last good close and the trailing volumes, oldest first."""

    previous_close: float | None = None
    volumes: tuple[float, ...] = ()


def flag_names(mask: int) -> list[str]:
    """The flags set in `mask`, in `FLAG_NAMES` order."""
    return [name for name, bit in FLAG_BITS.items() if mask & bit]


def is_validated(mask: int) -> bool:
    """The "validated" rule, the one copy of it: a bar is validated when no severe flag is set.
    The stored `validated` column is written from this function, never recomputed in SQL."""
    return not mask & SEVERE_MASK


def validate_bars(
    bars: Sequence[BarPrices],
    *,
    timeframe: str,
    asset_class: str,
    thresholds: Thresholds,
    split_days: Collection[date] = (),
    prior: PriorBars | None = None,
) -> list[int]:
    """One flag mask per bar, in order. `bars` must be sorted by time with no duplicates.

    `split_days` are the symbol's split execution dates: a price jump on one of those days is
    the split itself (on unadjusted data, or adjusted data the provider has not caught up
    with), not a bad print.
    """
    is_aligned = _alignment_check(timeframe, asset_class)
    jump_ratio = thresholds.max_jump_pct / 100.0
    spike_factor = thresholds.volume_spike_factor
    window_size = thresholds.volume_window

    previous_close = prior.previous_close if prior else None
    recent = deque(prior.volumes[-window_size:] if prior else ())
    ordered = sorted(recent)
    middle = window_size // 2
    even = window_size % 2 == 0

    masks: list[int] = []
    append = masks.append
    for bar in bars:
        o, h, low, c, v = bar.o, bar.h, bar.l, bar.c, bar.v
        mask = 0
        if h < low or h < (o if o > c else c) or low > (o if o < c else c):
            mask |= _OHLC
        if o <= 0 or h <= 0 or low <= 0 or c <= 0:
            mask |= _NON_POSITIVE
        if v < 0:
            mask |= _NEGATIVE_VOLUME
        elif len(ordered) == window_size:
            median = (ordered[middle - 1] + ordered[middle]) / 2 if even else ordered[middle]
            if median > 0 and v > spike_factor * median:
                mask |= _SPIKE
        if not is_aligned(bar.t):
            mask |= _MISALIGNED
        if (
            previous_close is not None
            and (
                abs(c - previous_close) > jump_ratio * previous_close
                or abs(o - previous_close) > jump_ratio * previous_close
            )
            and market_date(_EPOCH + timedelta(milliseconds=bar.t), asset_class) not in split_days
        ):
            mask |= _JUMP
        append(mask)

        if not mask & SEVERE_MASK:
            # A bad bar's close is no reference for the next one.
            previous_close = c
        if v >= 0:
            insort(ordered, v)
            recent.append(v)
            if len(recent) > window_size:
                del ordered[bisect_left(ordered, recent.popleft())]
    return masks


class _AlignmentCheck(Protocol):
    def __call__(self, t: int, /) -> bool: ...


def _alignment_check(timeframe: str, asset_class: str) -> _AlignmentCheck:
    """Whether a bar's start `t` lies on its timeframe's grid.

    Intraday bars start on whole multiples of their length from midnight UTC, or, for stocks
    and ETFs, from the NYSE open (09:30 New York: 13:30 or 14:30 UTC with daylight saving),
    since Polygon aligns session bars either way. Daily bars start at midnight: New York's for
    stocks and ETFs (Polygon's `t` for a session), UTC's for crypto. Weekly bars start at that
    midnight on a Sunday.
    """
    if timeframe not in TIMEFRAME_SECONDS:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    length_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    crypto = asset_class == "crypto"
    if length_ms < _MS_PER_DAY:
        offsets = {0} if crypto else {0, _OPEN_SUMMER_MS % length_ms, _OPEN_WINTER_MS % length_ms}
        if offsets == {0}:
            return lambda t: t % length_ms == 0
        allowed = frozenset(offsets)
        return lambda t: t % length_ms in allowed
    weekly = timeframe == "1w"
    if crypto:
        if weekly:
            # 1970-01-04 was a Sunday: Sundays are 3 days past a multiple of 7 days.
            return lambda t: t % (7 * _MS_PER_DAY) == 3 * _MS_PER_DAY
        return lambda t: t % _MS_PER_DAY == 0

    def at_new_york_midnight(t: int) -> bool:
        if t % 60_000:
            return False
        local = (_EPOCH + timedelta(milliseconds=t)).astimezone(NEW_YORK)
        if local.hour or local.minute:
            return False
        return not weekly or local.weekday() == _SUNDAY

    return at_new_york_midnight
