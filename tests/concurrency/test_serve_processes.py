"""`fieldpool serve` in several processes answers as one server."""

import re

import httpx

from tests.concurrency.storms import ApiServer

REQUESTS = 60


def test_metrics_count_the_requests_of_every_process(api_server: ApiServer) -> None:
    # New connections each time: the kernel spreads them over the three processes.
    for _ in range(REQUESTS):
        assert httpx.get(f"{api_server.base_url}/healthz").status_code == 200

    exposition = httpx.get(f"{api_server.base_url}/metrics").text

    counted = re.search(r'fieldpool_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)',
                        exposition)
    assert counted is not None, exposition[:2000]
    assert float(counted.group(1)) >= REQUESTS
