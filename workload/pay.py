"""The arithmetic of piece-rate pay, pure: factors from the facts of one visit, then points and pay."""

from dataclasses import dataclass
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal

from dispatch.kernel.settings import WorkloadSettings

CENT = Decimal("0.01")
ONE = Decimal("1.00")
SECONDS_PER_HOUR = Decimal(3600)


def money(value: Decimal) -> Decimal:
    """Rounded to the cent, half up, as a payslip is."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def hours_between(start: datetime | None, end: datetime) -> Decimal:
    if start is None:
        return Decimal("0.00")
    return money(Decimal(max(0.0, (end - start).total_seconds())) / SECONDS_PER_HOUR)


def in_window(clock: time, start: time, end: time) -> bool:
    """Whether a local clock time lies in [start, end); an end before the start wraps midnight."""
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end


def is_night(local_times: list[datetime], cfg: WorkloadSettings) -> bool:
    """Night work: the visit began (arrival) or ended (completion) inside the night window."""
    return any(in_window(t.time(), cfg.night_start, cfg.night_end) for t in local_times)


def distance_factor(distance_m: int | None, cfg: WorkloadSettings) -> Decimal:
    """The factor of the highest band the distance reaches; unknown distance pays the base."""
    if distance_m is None:
        return ONE
    factor = ONE
    for from_m, band_factor in sorted(cfg.distance_bands):
        if distance_m >= from_m:
            factor = band_factor
    return factor


def satisfaction_factor(satisfaction: int | None, cfg: WorkloadSettings) -> Decimal:
    """Before the follow-up arrives the visit is paid at the base."""
    if satisfaction is None:
        return ONE
    return cfg.satisfaction_factors.get(satisfaction, ONE)


@dataclass(frozen=True)
class Factors:
    night: Decimal
    distance: Decimal
    holiday: Decimal
    satisfaction: Decimal

    @property
    def product(self) -> Decimal:
        return self.night * self.distance * self.holiday * self.satisfaction


def points_and_pay(*, standard_hours: Decimal, piece_rate: Decimal, factors: Factors) -> tuple[Decimal, Decimal]:
    """Points are the standard hours scaled by every factor; pay the piece rate likewise (多劳多得)."""
    return money(standard_hours * factors.product), money(piece_rate * factors.product)
