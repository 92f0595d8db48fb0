"""What the simulated day assumes about people and roads: SIMULATION__* environment variables."""

from datetime import time
from functools import lru_cache

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Shift(BaseModel):
    starts: time
    ends: time


class SimulationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATION__", env_nested_delimiter="__", extra="ignore")

    # Roads are not straight lines: a town's street grid adds about a third (Manhattan over Euclid is ~1.27).
    detour_factor: float = Field(default=1.3, ge=1.0)
    # km/h from each local hour on until the next listed one: slow in the rush hours.
    speed_kmh_from_hour: dict[int, float] = {0: 45.0, 7: 25.0, 9: 35.0, 17: 22.0, 19: 35.0, 22: 45.0}
    # Time to decide on an offer (or notice an assignment): log-normal around a median.
    decide_median_s: float = Field(default=40.0, gt=0)
    decide_sigma: float = Field(default=0.9, gt=0)
    # The share of offers a technician never answers (phone in the pocket, already driving).
    never_answer_share: float = Field(default=0.15, ge=0, lt=1)
    # An assigned technician who never reads the push is phoned by the dispatcher after this.
    phoned_after_s: float = Field(default=600.0, gt=0)
    # Idle technicians look at their phone this often (and it sends its position).
    glance_every_s: int = Field(default=300, gt=0)
    # Hybrid: offers first, the system assigns a ticket unanswered this long (each branch's hybrid_after_s).
    hybrid_after_s: int = Field(default=120, gt=0)
    # Batch-optimal: how often the open tickets are matched to the free technicians.
    batch_every_s: int = Field(default=60, gt=0)
    # Seconds of driving the batch trades for a ticket that has used up its whole response SLA.
    urgency_weight_s: float = Field(default=900.0, ge=0)
    # The generated day: reports beside the outage burst, the burst, and the ticket types' shares.
    reports: int = Field(default=120, ge=1)
    first_report: time = time(7, 30)
    last_report: time = time(20, 30)
    morning_peak: time = time(9, 30)
    evening_peak: time = time(19, 0)
    peak_spread_min: float = Field(default=50.0, gt=0)
    # Of the reports beside the burst: in the morning peak, in the evening peak (the rest spread over the day).
    morning_share: float = Field(default=0.3, ge=0, le=1)
    evening_share: float = Field(default=0.35, ge=0, le=1)
    burst_reports: int = Field(default=30, ge=0)
    burst_minutes: int = Field(default=10, gt=0)
    burst_at: time = time(10, 40)
    burst_radius_m: float = Field(default=500.0, gt=0)
    burst_type: str = "tv_no_signal"
    type_shares: dict[str, float] = {
        "broadband_fault": 0.30, "tv_no_signal": 0.15, "stb_fault": 0.15, "slow_network": 0.15,
        "new_broadband": 0.08, "new_tv": 0.07, "relocation": 0.05, "removal": 0.05}
    # Rosters: half the technicians of each branch work the early shift, half the late one (local times). A
    # technician with tickets of their skills still waiting at the shift's end works on, up to `overtime_h`
    # (their roster window includes it, or the offers and the system's search would pass them over).
    early_shift: Shift = Shift(starts=time(7, 0), ends=time(16, 0))
    late_shift: Shift = Shift(starts=time(12, 0), ends=time(22, 0))
    overtime_h: int = Field(default=4, ge=0, le=8)


@lru_cache
def get_simulation_settings() -> SimulationSettings:
    return SimulationSettings()
