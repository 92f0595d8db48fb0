"""The fan-out's statement, in SQL: it runs once per feed event inside the outbox drain, where building
the same INSERT ... SELECT through the ORM cost more than running it."""

from sqlalchemy import text

# One delivery per enabled webhook that subscribes to the type and whose regions lie on the event region's
# path ("/1/5/23/": the event lies inside each of them); an event id already fanned out adds nothing.
FAN_OUT = text("""
INSERT INTO webhook_delivery (webhook_id, event_id, event_type, ticket_id, body, state, attempts)
SELECT w.id, :event_id, :kind, :ticket_id, :body, 'pending', 0
FROM webhook w
WHERE w.disabled_at IS NULL
  AND w.event_types @> ARRAY[CAST(:kind AS varchar)]
  AND w.region_ids && (SELECT CAST(string_to_array(trim(both '/' from r.path), '/') AS integer[])
                       FROM region r WHERE r.id = :region_id)
ON CONFLICT (webhook_id, event_id) WHERE redelivery_of IS NULL DO NOTHING
RETURNING id
""")
