"""The dispatch scorecard's headline in `make bench` (issue 18): today's nearest-push + grab on the simulated demo
day (`make simulate`'s day and seed), and how far it is from batch-optimal, which the bench plays too."""

from datetime import date
from pathlib import Path

from dispatch.kernel.settings import Settings
from simulation import run
from simulation.config import get_simulation_settings
from simulation.database import Place
from simulation.policies import PolicyName
from simulation.scorecard import Score, table

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DAY, SEED = date(2026, 11, 16), 7
WITHIN = 0.15  # issue 18: nearest-push within 15% of batch-optimal


def _against(name: str, today: float, batch: float) -> str:
    excess = today / batch - 1 if batch else float("inf")
    verdict = "met" if excess <= WITHIN else "missed"
    return f"{name}: nearest-push {today:.2f} vs batch-optimal {batch:.2f} ({excess:+.0%}, target <= +15%): {verdict}"


def main(bench_url: str, redis_url: str) -> str:
    scores, _ = run.simulate(Place(owner_url=bench_url, redis_url=redis_url), fixtures=FIXTURES, day=DAY, seed=SEED,
                             policies=[PolicyName.NEAREST_PUSH, PolicyName.BATCH], replay=None,
                             settings=Settings(log_json=False, log_level="WARNING"), cfg=get_simulation_settings())
    today: Score = scores[0]
    batch: Score = scores[1]
    return "\n".join([f"simulate: the demo day {DAY}, seed {SEED} (`make simulate` prints every policy)",
                      table([today]),
                      _against("km per ticket", today.km_per_ticket, batch.km_per_ticket),
                      _against("p90 time to accept (min)", today.accept_p90_min, batch.accept_p90_min)]) + "\n"
