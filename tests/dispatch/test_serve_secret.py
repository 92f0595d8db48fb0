"""`fieldpool serve` will not sign tokens with the key printed in the source, or a short one, outside dev."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from dispatch.app import create_app
from dispatch.kernel.settings import DEV_SECRET_KEY, Settings
from tests.conftest import ROOT, TEST_DATABASE_URL, TEST_REDIS_URL, _free_port, answers, fieldpool_process


def serve_env(secret_key: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "FIELDPOOL_ENV"}
    return {**env, "SECRET_KEY": secret_key, "DATABASE_URL": TEST_DATABASE_URL, "REDIS_URL": TEST_REDIS_URL,
            "REDIS_QUEUE_URL": TEST_REDIS_URL, **extra}


@pytest.mark.parametrize("secret_key", [DEV_SECRET_KEY, "short-and-guessable"])
def test_serve_refuses_the_default_or_a_short_secret_key(secret_key: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dispatch.cli", "serve", "--port", str(_free_port()),
                           "--workers", "1"], cwd=ROOT, env=serve_env(secret_key), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "not serving: SECRET_KEY" in done.stderr


def test_serve_takes_a_short_secret_key_in_dev(tmp_path: Path, redis: Redis) -> None:
    port = _free_port()
    env = serve_env("short-and-guessable", FIELDPOOL_ENV="dev", LOG_LEVEL="WARNING")
    with fieldpool_process(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "serve.log",
                           ready=answers(f"http://127.0.0.1:{port}")) as server:
        assert server.poll() is None


def test_the_app_itself_refuses_the_default_secret_key(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY is the default"):
        create_app(settings.model_copy(update={"secret_key": DEV_SECRET_KEY}))
