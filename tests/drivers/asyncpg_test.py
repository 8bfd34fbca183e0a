"""asyncpg through pgroute. asyncpg prepares every statement with Parse/Describe/Flush, reads the
description, then sends Bind/Execute/Sync: the two halves must land on the same server connection.
Checks routing, binary type round trips, prepared statement reuse, executemany, transactions,
copy_records_to_table, errors and read-your-writes.

Run by tests/drivers.rs with PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE pointing at pgroute and
PRIMARY_PORT/REPLICA_PORTS naming the nodes; the tables drv_apg_* exist. Prints one line per check
and `N passed, M failed` last; exits 1 on any failure.
"""

import asyncio
import csv
import datetime as dt
import io
import json
import sys
import time
from decimal import Decimal

import asyncpg
from checks import PRIMARY, REPLICAS, check, eq, run_sections_async, section, summary

T_ITEMS = "drv_apg_items"
T_COPY = "drv_apg_copy"


async def connect():
    # Connection parameters come from the libpq environment (PGHOST, PGPORT, ...).
    conn = await asyncpg.connect(timeout=10, command_timeout=20)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


async def port_of(conn):
    return await conn.fetchval("SELECT inet_server_port()")


UNICODE = "héllo wörld – 🐘🚀👩‍👩‍👧 漢字かなカナ 한국어 Ελληνικά עברית \t\\ 'quote\" end"
ALL_BYTES = bytes(range(256))
TS_UTC = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
TS_OFFSET = dt.datetime(1999, 12, 31, 22, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
JSON = {"a": [1, 2.5, None, True, False], "ü": "🐘", "nested": {"k": "v", "empty": {}}, "big": 12345678901234}
ROUND_TRIPS = [
    ("int2 min", "int2", -32768),
    ("int2 max", "int2", 32767),
    ("int4 min", "int4", -2147483648),
    ("int4 max", "int4", 2147483647),
    ("int8 min", "int8", -9223372036854775808),
    ("int8 max", "int8", 9223372036854775807),
    ("numeric high precision", "numeric", Decimal("12345678901234567890.123456789012345678901234567890")),
    ("numeric tiny negative", "numeric", Decimal("-0.000000000000000000000000000000000001")),
    ("numeric 50 digits", "numeric", Decimal("99999999999999999999999999999999999999999999999999")),
    ("text utf-8", "text", UNICODE),
    ("text empty", "text", ""),
    ("bytea 256 values", "bytea", ALL_BYTES),
    ("timestamptz utc", "timestamptz", TS_UTC),
    ("timestamptz offset", "timestamptz", TS_OFFSET),
    ("jsonb", "jsonb", JSON),
    ("int4[]", "int4[]", [1, -2, None, 2147483647, -2147483648]),
    ("text[]", "text[]", ["a", "b c", "", None, "🐘", 'quo"te', "com,ma", "{brace}", "NULL"]),
    ("int8 null", "int8", None),
    ("text null", "text", None),
]


@section
async def reads_land_on_replicas():
    conn = await connect()
    try:
        ports = [await port_of(conn) for _ in range(20)]
        check("20 reads ran on replicas", set(ports) <= REPLICAS, f"ports {sorted(set(ports))}, replicas {REPLICAS}")
        rows = await conn.fetch("SELECT pg_is_in_recovery() AS rec, inet_server_port() AS port, g FROM generate_series(1, $1::int) g", 5)
        check("a parameterized read ran on a replica in recovery", len(rows) == 5 and all(r["rec"] and r["port"] in REPLICAS for r in rows), rows)
        eq("its rows", [r["g"] for r in rows], [1, 2, 3, 4, 5])
        cached = [await conn.fetchval("SELECT $1::int8 + 1, inet_server_port()", i, column=1) for i in range(10)]
        check("statement-cache hits (Bind without Parse) ran on replicas", set(cached) <= REPLICAS, cached)
    finally:
        await conn.close()


@section
async def prepared_statements_are_reused():
    conn = await connect()
    try:
        stmt = await conn.prepare("SELECT $1::int4 * 2 AS doubled, inet_server_port() AS port")
        eq("the prepared statement describes its columns", [a.name for a in stmt.get_attributes()], ["doubled", "port"])
        eq("and its parameters", [p.name for p in stmt.get_parameters()], ["int4"])
        rows = [await stmt.fetchrow(i) for i in range(100)]
        eq("one prepared statement run 100 times", [r["doubled"] for r in rows], [i * 2 for i in range(100)])
        check("every run was a read on a replica", {r["port"] for r in rows} <= REPLICAS, {r["port"] for r in rows})
        write = await conn.prepare(f"INSERT INTO {T_ITEMS} VALUES ($1, $2) RETURNING inet_server_port()")
        ports = [await write.fetchval(i, f"p{i}") for i in range(1000, 1020)]
        eq("a prepared INSERT run 20 times ran on the primary", set(ports), {PRIMARY})
        eq("its rows are read back at once", await conn.fetchval(f"SELECT count(*) FROM {T_ITEMS} WHERE id >= 1000 AND id < 1020"), 20)
        # Both statements again, interleaved, after the pool has handed out other connections.
        for i in range(5):
            eq(f"reused read {i}", await stmt.fetchval(i), i * 2)
            eq(f"reused write {i}", await write.fetchval(2000 + i, "again"), PRIMARY)
    finally:
        await conn.close()


@section
async def type_round_trips():
    conn = await connect()
    try:
        for name, typ, value in ROUND_TRIPS:
            eq(f"{name} round trip", await conn.fetchval(f"SELECT $1::{typ}", value), value)
        values = [v for _, _, v in ROUND_TRIPS]
        casts = ", ".join(f"${i + 1}::{typ}" for i, (_, typ, _) in enumerate(ROUND_TRIPS))
        row = await conn.fetchrow(f"SELECT {casts}", *values)
        eq(f"{len(values)} parameters in one statement", list(row), values)
        row = await conn.fetchrow(
            "SELECT 32767::int2, 9223372036854775807::int8, '1.000000000000000000000000000001'::numeric, "
            "decode(string_agg(lpad(to_hex(g), 2, '0'), ''), 'hex'), '{\"x\": [1, null]}'::jsonb, "
            "ARRAY[1, NULL, 3]::int[], ARRAY['α', NULL]::text[], NULL::int4, "
            "'2024-02-29 23:59:59.123456+00'::timestamptz "
            "FROM generate_series(0, 255) g"
        )
        eq(
            "server-made values",
            tuple(row),
            (32767, 9223372036854775807, Decimal("1.000000000000000000000000000001"), ALL_BYTES, {"x": [1, None]}, [1, None, 3], ["α", None], None, TS_UTC),
        )
    finally:
        await conn.close()


@section
async def writes_and_read_your_writes():
    conn = await connect()
    try:
        eq("INSERT ... RETURNING ran on the primary", await conn.fetchval(f"INSERT INTO {T_ITEMS} VALUES (1, $1) RETURNING inet_server_port()", UNICODE), PRIMARY)
        eq("the read right after the INSERT sees it", await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = $1", 1), UNICODE)
        stale = []
        for i in range(2, 32):
            await conn.execute(f"INSERT INTO {T_ITEMS} VALUES ($1, $2)", i, f"v{i}")
            got = await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = $1", i)
            if got != f"v{i}":
                stale.append((i, got))
        check("30 INSERTs each read back at once", not stale, stale)
        stale = []
        for i in range(10):
            status = await conn.execute(f"UPDATE {T_ITEMS} SET v = $1 WHERE id = 1", f"u{i}")
            got = await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = 1")
            if status != "UPDATE 1" or got != f"u{i}":
                stale.append((i, status, got))
        check("10 UPDATEs each read back at once", not stale, stale)
        # Simple-protocol writes (execute without arguments) count too.
        await conn.execute(f"DELETE FROM {T_ITEMS} WHERE id = 31; INSERT INTO {T_ITEMS} VALUES (32, 'multi')")
        eq("a multi-statement simple query is seen at once", await conn.fetchval(f"SELECT string_agg(id::text, ',' ORDER BY id) FROM {T_ITEMS} WHERE id IN (31, 32)"), "32")
        deadline = time.monotonic() + 10
        port = await port_of(conn)
        while port not in REPLICAS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            port = await port_of(conn)
        check("reads return to the replicas after the writes are replayed", port in REPLICAS, port)
    finally:
        await conn.close()


@section
async def executemany_inserts_on_the_primary():
    conn = await connect()
    try:
        rows = [(3000 + i, f"many {i} {UNICODE}") for i in range(500)]
        await conn.executemany(f"INSERT INTO {T_ITEMS} VALUES ($1, $2)", rows)
        got = await conn.fetch(f"SELECT id, v FROM {T_ITEMS} WHERE id >= 3000 AND id < 3500 ORDER BY id")
        eq("executemany inserted 500 rows, read back at once", [tuple(r) for r in got], rows)
        try:
            await conn.executemany(f"INSERT INTO {T_ITEMS} VALUES ($1, $2)", [(3600, "new"), (3000, "dup"), (3601, "new")])
            check("executemany with a duplicate fails", False, "no error")
        except asyncpg.UniqueViolationError as e:
            eq("executemany's error is 23505", e.sqlstate, "23505")
        eq("a failed executemany is rolled back whole", await conn.fetchval(f"SELECT count(*) FROM {T_ITEMS} WHERE id IN (3600, 3601)"), 0)
        eq("the connection works after it", await conn.fetchval("SELECT 1"), 1)
    finally:
        await conn.close()


@section
async def transactions_run_on_the_primary():
    conn = await connect()
    try:
        async with conn.transaction():
            ports = [await port_of(conn) for _ in range(5)]
            await conn.execute(f"INSERT INTO {T_ITEMS} VALUES ($1, 'tx')", 100)
            eq("the transaction sees its own insert", await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = 100"), "tx")
            check("asyncpg knows it is in a transaction", conn.is_in_transaction())
        check("every statement of the transaction ran on the primary", set(ports) == {PRIMARY}, ports)
        eq("the committed row is read back", await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = 100"), "tx")

        class Abort(Exception):
            pass

        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (101, 'rolled back')")
                raise Abort()
        except Abort:
            pass
        eq("a rolled-back insert is gone", await conn.fetchval(f"SELECT count(*) FROM {T_ITEMS} WHERE id = 101"), 0)
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (102, 'outer')")
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (103, 'inner')")
                    raise Abort()
            except Abort:
                pass
        eq("a savepoint rolled back only its own insert", [r["id"] for r in await conn.fetch(f"SELECT id FROM {T_ITEMS} WHERE id IN (102, 103) ORDER BY id")], [102])
        async with conn.transaction(isolation="serializable", readonly=True):
            eq("a read-only serializable transaction runs on the primary", await port_of(conn), PRIMARY)
            eq("with its isolation level", await conn.fetchval("SHOW transaction_isolation"), "serializable")
        check("the transaction ended", not conn.is_in_transaction())
    finally:
        await conn.close()


@section
async def writes_right_after_a_prepared_read():
    """conn.prepare() sends Parse/Describe/Flush and never a Sync of its own: whatever comes next
    must still be routed by what it is."""

    async def after_prepared_read(what, action):
        conn = await connect()
        try:
            stmt = await conn.prepare("SELECT inet_server_port()")
            try:
                got = await action(conn)
                eq(f"prepare(read) then {what}: ran on the primary", got, PRIMARY)
            except asyncpg.PostgresError as e:
                check(f"prepare(read) then {what}: ran on the primary", False, f"{type(e).__name__} {e.sqlstate}: {e}")
            # After the write, read-your-writes may keep it on the primary for a while.
            port = await stmt.fetchval()
            check(f"prepare(read) then {what}: the prepared read still runs", port in REPLICAS | {PRIMARY}, port)
        finally:
            await conn.close()

    async def simple_insert(conn):
        await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (4000, 'simple')")  # no arguments: a simple Query
        return await conn.fetchval(f"SELECT inet_server_port() FROM {T_ITEMS} WHERE id = 4000 FOR UPDATE")

    async def extended_insert(conn):
        return await conn.fetchval(f"INSERT INTO {T_ITEMS} VALUES ($1, 'extended') RETURNING inet_server_port()", 4001)

    async def transaction(conn):
        async with conn.transaction():
            port = await port_of(conn)
            await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (4002, 'tx')")
        return port

    await after_prepared_read("a simple-query INSERT", simple_insert)
    await after_prepared_read("an extended INSERT", extended_insert)
    await after_prepared_read("a transaction", transaction)


# Rows 1..1000 go in through copy_to_table (CSV text, id and v only), the rest through
# copy_records_to_table (binary, every column) in two halves.
COPY_ROWS = [
    (i, f"row {i} {UNICODE if i % 7 == 0 else ''}", None, None) if i <= 1000 else
    (i, f"row {i} {UNICODE if i % 7 == 0 else ''}", ALL_BYTES if i % 5 == 0 else bytes([i % 256, 0, 255]), Decimal(i) / Decimal(7) if i % 3 else None)
    for i in range(1, 3001)
]
COPY_COLUMNS = ["id", "v", "b", "n"]
# What copy_records_to_table runs (through the statement cache) to learn the column types.
COPY_LOOKUP = f'SELECT "id", "v", "b", "n" FROM "{T_COPY}" LIMIT 1'
# A COPY whose data never reaches the server waits forever: give each one this long.
COPY_TIMEOUT = 3


async def copy_on_fresh_connection(name, op, want_status, cached_lookup=False):
    """Runs one COPY on its own connection (a COPY that hangs leaves the connection unusable).
    With cached_lookup the column lookup is in asyncpg's statement cache beforehand, so that
    the COPY is nothing but a Query followed at once by its CopyData and CopyDone.
    Returns True when it succeeded."""
    conn = await connect()
    try:
        if cached_lookup:
            await conn.fetch(COPY_LOOKUP)
        status = await op(conn)
        eq(name, status, want_status)
        return status == want_status
    except asyncpg.PostgresError as e:
        check(name, False, f"{type(e).__name__} {e.sqlstate}: {e}")
    except asyncio.TimeoutError:
        check(name, False, f"no reply within {COPY_TIMEOUT}s: the server never got the COPY data")
    finally:
        conn.terminate()
    return False


@section
async def copy_in_and_out():
    csv_rows, pipelined_rows, looked_up_rows = COPY_ROWS[:1000], COPY_ROWS[1000:2000], COPY_ROWS[2000:]
    buf = io.StringIO()
    csv.writer(buf).writerows((i, v) for i, v, _, _ in csv_rows)
    done = []
    if await copy_on_fresh_connection(
        "copy_to_table (COPY FROM STDIN, CSV from a file object)",
        lambda conn: conn.copy_to_table(T_COPY, source=io.BytesIO(buf.getvalue().encode()), columns=["id", "v"], format="csv", timeout=COPY_TIMEOUT),
        "COPY 1000",
    ):
        done += csv_rows


    async def copy_in_chunks(conn):
        # Five COPYs in a row: whether the data overtakes the server's CopyInResponse is a race.
        for start in range(0, len(pipelined_rows), 200):
            chunk = pipelined_rows[start:start + 200]
            status = await conn.copy_records_to_table(T_COPY, records=chunk, columns=COPY_COLUMNS, timeout=COPY_TIMEOUT)
            if status != "COPY 200":
                return f"chunk {start // 200}: {status}"
            done.extend(chunk)
        return "5 x COPY 200"

    before = len(done)
    if not await copy_on_fresh_connection(
        "copy_records_to_table x5: CopyData sent right behind the COPY Query",
        copy_in_chunks,
        "5 x COPY 200",
        cached_lookup=True,
    ):
        print(f"     ({(len(done) - before) // 200} of the 5 COPYs had succeeded before that)")
    if await copy_on_fresh_connection(
        "copy_records_to_table: COPY right after its column lookup's Parse/Describe/Flush",
        lambda conn: conn.copy_records_to_table(T_COPY, records=looked_up_rows, columns=COPY_COLUMNS, timeout=COPY_TIMEOUT),
        "COPY 1000",
    ):
        done += looked_up_rows
    conn = await connect()
    try:
        # Load what the COPYs did not, so that the checks below still say something.
        missing = [r for r in COPY_ROWS if r not in done]
        if missing:
            await conn.executemany(f"INSERT INTO {T_COPY} (id, v, b, n) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING", missing)
        got = await conn.fetch(f"SELECT id, v, b, n FROM {T_COPY} ORDER BY id")
        check("every row is read back exactly", [tuple(r) for r in got] == COPY_ROWS, f"{len(got)} rows; first difference: {next(((tuple(g), w) for g, w in zip(got, COPY_ROWS) if tuple(g) != w), None)}")
        out = []

        async def sink(chunk):
            out.append(chunk)

        await conn.copy_from_query(f"SELECT id, v FROM {T_COPY} WHERE id <= $1 ORDER BY id", 7, output=sink, format="csv", timeout=COPY_TIMEOUT)
        want = io.StringIO()
        csv.writer(want, lineterminator="\n").writerows((i, v) for i, v, _, _ in COPY_ROWS[:7])
        eq("copy_from_query (COPY TO STDOUT, CSV)", b"".join(out).decode(), want.getvalue())
        out.clear()
        await conn.copy_from_query("SELECT inet_server_port()", output=sink, timeout=COPY_TIMEOUT)
        eq("COPY runs on the primary", int(b"".join(out)), PRIMARY)
    finally:
        await conn.close()

    conn = await connect()
    name = "a COPY that violates a key fails with 23505"
    try:
        await conn.fetch(COPY_LOOKUP)
        await conn.copy_records_to_table(T_COPY, records=[(1, "dup", None, None)], columns=COPY_COLUMNS, timeout=COPY_TIMEOUT)
        check(name, False, "no error")
    except asyncpg.UniqueViolationError as e:
        eq(name, e.sqlstate, "23505")
    except asyncpg.PostgresError as e:
        check(name, False, f"{type(e).__name__} {e.sqlstate}: {e}")
    except asyncio.TimeoutError:
        check(name, False, f"no reply within {COPY_TIMEOUT}s: the server never got the COPY data")
    finally:
        conn.terminate()
    conn = await connect()
    try:
        eq("the failed COPY added nothing", await conn.fetchval(f"SELECT count(*) FROM {T_COPY}"), 3000)
    finally:
        await conn.close()


@section
async def errors_pass_through():
    conn = await connect()
    try:
        await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (500, 'first')")
        try:
            await conn.execute(f"INSERT INTO {T_ITEMS} VALUES ($1, 'again')", 500)
            check("a duplicate key fails", False, "no error")
        except asyncpg.UniqueViolationError as e:
            eq("unique violation has sqlstate 23505", e.sqlstate, "23505")
            eq("the error names the constraint", e.constraint_name, f"{T_ITEMS}_pkey")
            check("the error has the server's detail", "already exists" in (e.detail or ""), e.detail)
        eq("the connection is usable after the error", await conn.fetchval(f"SELECT v FROM {T_ITEMS} WHERE id = $1", 500), "first")
        try:
            await conn.fetchval("SELECT 1 / $1::int4", 0)
            check("division by zero fails", False, "no error")
        except asyncpg.DivisionByZeroError as e:
            eq("a failed read reports 22012", e.sqlstate, "22012")
        try:
            await conn.fetchval("SELEC $1::int", 1)
            check("a syntax error fails at Parse", False, "no error")
        except asyncpg.PostgresSyntaxError as e:
            eq("a syntax error reports 42601", e.sqlstate, "42601")
        try:
            await conn.prepare("SELECT * FROM drv_apg_no_such_table WHERE id = $1")
            check("preparing against an unknown table fails", False, "no error")
        except asyncpg.UndefinedTableError as e:
            eq("an unknown table reports 42P01 at Describe", e.sqlstate, "42P01")
        eq("the statement cache still works after errors", await conn.fetchval("SELECT $1::int4 + 1", 41), 42)
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (501, 'in tx')")
                await conn.execute(f"INSERT INTO {T_ITEMS} VALUES (500, 'dup in tx')")
            check("a duplicate inside a transaction fails", False, "no error")
        except asyncpg.UniqueViolationError as e:
            eq("inside a transaction: 23505", e.sqlstate, "23505")
        check("the transaction was rolled back", not conn.is_in_transaction())
        eq("its other insert is gone", await conn.fetchval(f"SELECT count(*) FROM {T_ITEMS} WHERE id = 501"), 0)
    finally:
        await conn.close()


@section
async def concurrent_connections():
    conns = [await connect() for _ in range(4)]
    try:
        async def work(conn, n):
            stmt = await conn.prepare("SELECT $1::int8 * $1::int8, inet_server_port()")
            return [tuple(await stmt.fetchrow(n * 100 + i)) for i in range(25)]

        results = await asyncio.gather(*(work(c, n) for n, c in enumerate(conns)))
        ok = all(r[0] == (n * 100 + i) ** 2 for n, rows in enumerate(results) for i, r in enumerate(rows))
        check("4 connections x 25 prepared reads at once return their own results", ok, results)
        ports = {r[1] for rows in results for r in rows}
        check("all of them on replicas", ports <= REPLICAS, ports)
    finally:
        for c in conns:
            await c.close()


async def main():
    print(f"asyncpg {asyncpg.__version__}, primary {PRIMARY}, replicas {sorted(REPLICAS)}")
    await run_sections_async()
    return summary()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
