"""The PostgreSQL statements of the ledger (``PostgresStore``): arrays bound as parameters, each
prepared once per connection, so a batch runs a fixed number of statements whatever its size.
Locks are taken in the order the package docstring gives (keys, rollup rows, meters by id, …)."""

from metering.aggregation import meter_value_sql, rollup_merge_sql
from metering.ledger.store import METER_COLUMNS, TYPE_COLUMNS

# The rollup row of an hour merges a batch's statistics; a meter's value advances by its records'.
ROLLUP_MERGE = rollup_merge_sql(held="r", incoming="EXCLUDED")
METER_VALUE = meter_value_sql(
    aggregation="u.aggregation",
    held="m.value",
    total="u.total",
    count="u.n",
    highest="u.high",
    lowest="u.low",
)

RESOLVE = f"""
    WITH t AS MATERIALIZED (
        SELECT {TYPE_COLUMNS}, {{rules}} AS rules FROM metering_metertype
        WHERE account_id = %(account)s AND (id = ANY(%(ids)b::uuid[]) OR api_name = ANY(%(names)b::text[]))
    )
    SELECT t.*, m.id, m.meter_type_id, m.meter_key, m.user_id, m.thresholds <> '[]'::jsonb FROM t
    LEFT JOIN metering_meter m ON m.account_id = %(account)s AND m.user_id = ANY(%(users)b::text[])
                                  AND m.meter_type_id = t.id
"""  # noqa: S608
RULES = (
    "(SELECT json_agg(json_build_array(r.dimension_name, r.action, r.dimension_values) ORDER BY r.created_at) "
    "FROM metering_metereventfilteringrule r WHERE r.meter_type_id = metering_metertype.id)"
)
INSERT_METERS = """
    INSERT INTO metering_meter (id, account_id, meter_type_id, meter_key, user_id, custom_fields, capacity,
        thresholds, delete_on_reset, value, groups, group_breakdowns, carry_first, carry_last, record_count,
        period_start, period_end, unit, timezone, created_at, updated_at)
    SELECT c.id, %(account)s, c.meter_type_id, %(meter_key)s, c.user_id, '{}', c.capacity, c.thresholds, false,
           c.value, '[]', '[]', '{}', '{}', 0, c.period_start, c.period_end, c.unit, c.timezone, %(now)s, %(now)s
    FROM unnest(%(ids)b::uuid[], %(types)b::uuid[], %(users)b::text[], %(capacities)t::numeric[],
                %(thresholds)b::jsonb[], %(values)t::numeric[], %(starts)b::timestamptz[], %(ends)b::timestamptz[],
                %(units)b::text[], %(zones)b::text[])
         AS c(id, meter_type_id, user_id, capacity, thresholds, value, period_start, period_end, unit, timezone)
    WHERE NOT EXISTS (SELECT 1 FROM metering_meter m WHERE m.account_id = %(account)s
                      AND m.user_id = c.user_id AND m.meter_type_id = c.meter_type_id)
    ORDER BY c.meter_type_id, c.user_id
    ON CONFLICT DO NOTHING
"""
FIND_METERS = """
    SELECT id, meter_type_id, meter_key, user_id, thresholds <> '[]'::jsonb FROM metering_meter
    WHERE account_id = %s AND (meter_type_id, user_id) IN (SELECT * FROM unnest(%b::uuid[], %b::text[]))
"""
# The batch's dedup keys, ledger rows and hourly rollups (locks in that order: key, rollup row).
# A batch row without a meter is the key of a refused record (bound for data correction): its key
# is recorded (``held_by_correction``), nothing is appended for it.
_APPEND_HEAD = f"""
    WITH batch AS (
        SELECT r->>0 AS key, r->>1 AS request_hash, (r->>2)::uuid AS meter_type_id, (r->>3)::uuid AS meter_id,
               r->>4 AS user_id, (r->>5)::numeric AS value, (r->>6)::timestamptz AS ts, r->7 AS dimensions,
               r->>8 AS source_ref, ord
        FROM jsonb_array_elements(%(batch)s::jsonb) WITH ORDINALITY AS b(r, ord)
    ), fresh AS (
        INSERT INTO metering_usagededupkey AS d (account_id, key, request_hash, created_at, held_by_correction)
        SELECT DISTINCT ON (key) %(account)s, key, request_hash, %(now)s, meter_id IS NULL
        FROM batch ORDER BY key, ord
        ON CONFLICT DO NOTHING
        RETURNING d.key
    ), appended AS (
        INSERT INTO metering_usagerecord (account_id, meter_type_id, meter_id, user_id, value, "timestamp",
                                          dimensions, source, source_ref, idempotency_key, created_at)
        SELECT DISTINCT ON (b.key) %(account)s, b.meter_type_id, b.meter_id, b.user_id, b.value, b.ts,
               b.dimensions, %(source)s, coalesce(b.source_ref, %(source_ref)s), b.key, %(now)s
        FROM batch b JOIN fresh f ON f.key = b.key WHERE b.meter_id IS NOT NULL ORDER BY b.key, b.ord
        RETURNING meter_type_id, meter_id, user_id, value, "timestamp", idempotency_key
    ), rolled AS (
        INSERT INTO metering_usagerollup AS r (account_id, meter_type_id, user_id, hour, sum, count, max, min)
        SELECT %(account)s, meter_type_id, user_id, date_trunc('hour', "timestamp", 'UTC'), sum(value), count(*),
               max(value), min(value)
        FROM appended GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
        ON CONFLICT (account_id, meter_type_id, user_id, hour) DO UPDATE
        SET {ROLLUP_MERGE}
        RETURNING 1
    )"""  # noqa: S608
APPEND = (
    _APPEND_HEAD  # noqa: S608
    + """
    SELECT key FROM fresh
"""
)
# APPEND and the meters' update in one statement, for batches whose meters need nothing
# computed in Python (no groups, breakdowns, carry or thresholds): the same writes as APPEND +
# LOCK_METERS + UPDATE_METERS in the same lock order (keys, rollup rows, then the meters in id
# order, once every rollup is written: ``count(*)`` reads all of ``rolled``). A meter counts the
# records whose time is in the period its locked row holds. Answers each fresh key and whether
# its meter counted it.
APPEND_COUNT = (
    _APPEND_HEAD  # noqa: S608
    + f""", locked AS MATERIALIZED (
        SELECT m.id, m.period_start, m.period_end FROM metering_meter m
        WHERE m.id = ANY(%(meters)s::uuid[]) AND m.id IN (SELECT meter_id FROM appended)
          AND (SELECT count(*) FROM rolled) >= 0
        ORDER BY m.id FOR UPDATE
    ), totals AS (
        SELECT a.meter_id, t.aggregation, sum(a.value) AS total, count(*) AS n, max(a.value) AS high,
               min(a.value) AS low
        FROM appended a
        JOIN locked l ON l.id = a.meter_id AND a."timestamp" >= l.period_start AND a."timestamp" < l.period_end
        JOIN metering_metertype t ON t.id = a.meter_type_id
        GROUP BY a.meter_id, t.aggregation
    ), counted AS (
        UPDATE metering_meter AS m
        SET value = {METER_VALUE},
            record_count = m.record_count + u.n, last_ingested_at = %(now)s, updated_at = %(now)s
        FROM totals u WHERE m.id = u.meter_id
        RETURNING 1
    )
    SELECT a.idempotency_key, l.id IS NOT NULL FROM appended a
    LEFT JOIN locked l ON l.id = a.meter_id AND a."timestamp" >= l.period_start AND a."timestamp" < l.period_end
"""  # noqa: S608
)
HASHES = (
    "SELECT key, request_hash FROM metering_usagededupkey WHERE account_id = %s AND key = ANY(%b::text[])"
)
LOCK_METERS = f"SELECT {METER_COLUMNS} FROM metering_meter WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"  # noqa: S608
UPDATE_METERS = """
    UPDATE metering_meter AS m
    SET value = u.value, groups = u.groups, group_breakdowns = u.group_breakdowns, carry_first = u.carry_first,
        carry_last = u.carry_last, carry_first_at = u.carry_first_at, carry_last_at = u.carry_last_at,
        record_count = u.record_count, last_ingested_at = %(now)s, updated_at = %(now)s
    FROM unnest(%(ids)b::uuid[], %(values)t::numeric[], %(groups)b::jsonb[], %(breakdowns)b::jsonb[],
                %(carry_first)b::jsonb[], %(carry_last)b::jsonb[], %(carry_first_at)b::timestamptz[],
                %(carry_last_at)b::timestamptz[], %(counts)b::bigint[])
         AS u(id, value, groups, group_breakdowns, carry_first, carry_last, carry_first_at, carry_last_at,
              record_count)
    WHERE m.id = u.id
"""
THRESHOLD_EVENTS = """
    INSERT INTO metering_thresholdevent (id, account_id, meter_id, threshold_index, name, threshold_value, value,
                                         period_start, crossed_at)
    SELECT e.id, %(account)s, e.meter_id, e.position, e.name, e.threshold_value, e.value, e.period_start, %(now)s
    FROM unnest(%(ids)b::uuid[], %(meters)b::uuid[], %(positions)b::int[], %(names)b::text[],
                %(limits)t::numeric[], %(values)t::numeric[], %(starts)b::timestamptz[])
         AS e(id, meter_id, position, name, threshold_value, value, period_start)
    ORDER BY e.meter_id, e.position
    ON CONFLICT (meter_id, threshold_index, period_start) DO NOTHING
    RETURNING id
"""
CORRECTIONS = """
    INSERT INTO metering_datacorrection (id, account_id, source, source_ref, node, reason, message, record,
        idempotency_key, request_hash, status, attempts, created_at, updated_at, resolved_at)
    SELECT c.id, %(account)s, %(source)s, coalesce(nullif(c.source_ref, ''), %(source_ref)s), c.node, c.reason,
           c.message, c.record, c.key, c.hash, 'OPEN', 1, %(now)s, %(now)s, NULL
    FROM unnest(%(ids)b::uuid[], %(nodes)b::text[], %(reasons)b::text[], %(messages)b::text[],
                %(records)b::jsonb[], %(keys)b::text[], %(hashes)b::text[], %(refs)b::text[])
         AS c(id, node, reason, message, record, key, hash, source_ref)
    ORDER BY c.key
    ON CONFLICT (account_id, idempotency_key) WHERE status = 'OPEN' DO NOTHING
    RETURNING id, idempotency_key
"""
OPEN_CORRECTIONS = (
    "SELECT id, idempotency_key FROM metering_datacorrection WHERE account_id = %s "
    "AND idempotency_key = ANY(%b::text[]) AND status = 'OPEN'"
)
