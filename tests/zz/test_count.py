import httpx
import redis.client
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.concurrency.conftest import crowd  # noqa
from tests.conftest import log_in

LOG = []
def _sql(conn, cursor, statement, params, context, executemany):
    LOG.append(("sql", statement.split("\n")[0][:110]))
def _begin(conn): LOG.append(("sql", "BEGIN"))
def _commit(conn): LOG.append(("sql", "COMMIT"))
_orig = redis.client.Redis.execute_command
def _redis(self, *args, **kw):
    LOG.append(("redis", " ".join(str(a)[:40] for a in args[:3])))
    return _orig(self, *args, **kw)
_porig = redis.client.Pipeline.execute
def _pipe(self, *a, **k):
    LOG.append(("redis", f"PIPELINE x{len(self.command_stack)}"))
    return _porig(self, *a, **k)

def test_count(live_server, crowd):
    event.listen(Engine, "before_cursor_execute", _sql)
    event.listen(Engine, "begin", _begin)
    event.listen(Engine, "commit", _commit)
    redis.client.Redis.execute_command = _redis
    redis.client.Pipeline.execute = _pipe
    members = crowd.enlist(8, max_active=lambda n: 100)
    with httpx.Client(base_url=live_server, timeout=30) as c:
        disp = log_in(c, "dispatcher.xl")
        for m in members:
            assert c.put("/api/v1/me/duty", json={"on_duty": True}, headers=m.headers).status_code < 300
            r = c.put("/api/v1/me/location", json={"lat": 43.935, "lng": 116.08, "crs": "wgs84", "accuracy_m": 10}, headers=m.headers)
            assert r.status_code < 300, r.text
        for i in range(3):
            body = {"type_code": "broadband_fault", "description": "x", "location": {"lat": 43.935, "lng": 116.08},
                    "contact": {"name": "n", "phone": f"1390000{i:04d}"}}
            LOG.clear()
            r = c.post("/api/v1/tickets", json=body, headers=disp); assert r.status_code == 201, r.text
            tid = r.json()["id"]
        print("\n=== INTAKE"); [print(*e) for e in LOG]
        LOG.clear()
        r = c.post(f"/api/v1/tickets/{tid}/grab", headers=members[0].headers); print(r.status_code)
        print("\n=== GRAB WIN"); [print(*e) for e in LOG]
        LOG.clear()
        r = c.post(f"/api/v1/tickets/{tid}/grab", headers=members[1].headers); print(r.status_code)
        print("\n=== GRAB LOSE"); [print(*e) for e in LOG]
        LOG.clear()
        r = c.get("/api/v1/technicians/nearest?lat=43.935&lng=116.08&type_code=broadband_fault", headers=disp); print(r.status_code)
        print("\n=== NEAREST"); [print(*e) for e in LOG]
        LOG.clear()
        r = c.get("/api/v1/me", headers=members[2].headers); print(r.status_code)
        print("\n=== ME"); [print(*e) for e in LOG]
