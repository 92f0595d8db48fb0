"""`fieldpool simulate` at the command line: it drops its database, so it never takes the deployment's."""

from typer.testing import CliRunner

from dispatch.cli import app
from dispatch.kernel.settings import Settings


def test_simulate_refuses_the_deployments_database(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["simulate", "--database-url", settings.owner_database_url])
    assert result.exit_code == 2
    assert "drops it" in result.output


def test_simulate_refuses_an_unknown_policy(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["simulate", "--policy", "fastest-finger"])
    assert result.exit_code == 2
    assert "fastest-finger" in result.output
