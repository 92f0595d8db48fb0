"""The scorecard drawn as PNG charts (matplotlib's object API renders with Agg: no display needed)."""

from pathlib import Path

from matplotlib.figure import Figure

from simulation.scorecard import Score

# (file, title, y label, [(Score field, bar label)])
CHARTS = [
    ("accept.png", "Time to accept", "minutes", [("accept_p50_min", "p50"), ("accept_p90_min", "p90")]),
    ("arrive.png", "Time to arrive", "minutes", [("arrive_p50_min", "p50"), ("arrive_p90_min", "p90")]),
    ("travel.png", "Road km per ticket", "km", [("km_per_ticket", "km/ticket")]),
    ("sla.png", "SLA attainment", "share of tickets", [("response_sla", "response"), ("resolution_sla", "resolution")]),
    ("fairness.png", "Gini of pay across technicians", "Gini", [("pay_gini", "Gini")]),
]


def draw(scores: list[Score], folder: Path) -> list[Path]:
    """One grouped bar chart per measure, a group per policy; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    names = [s.policy for s in scores]
    for file, title, unit, series in CHARTS:
        figure = Figure(figsize=(8, 4.5), layout="constrained")
        axes = figure.add_subplot()
        width = 0.8 / len(series)
        for i, (name, label) in enumerate(series):
            values = [getattr(s, name) for s in scores]
            axes.bar([x + i * width for x in range(len(scores))], values, width, label=label)
        axes.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(scores))], names, rotation=15)
        axes.set_title(title)
        axes.set_ylabel(unit)
        if len(series) > 1:
            axes.legend()
        figure.savefig(folder / file, dpi=100)
        written.append(folder / file)
    return written
