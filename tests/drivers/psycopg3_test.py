"""psycopg 3 through pgroute: server-side prepared statements for every query
(prepare_threshold=0), binary and text transfer, routing, types, COPY, errors, read-your-writes.

Run by tests/drivers.rs with PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE pointing at pgroute and
PRIMARY_PORT/REPLICA_PORTS naming the nodes; the tables drv_py3_* exist. Prints one line per check
and `N passed, M failed` last; exits 1 on any failure.
"""

import datetime as dt
import sys
import time
from decimal import Decimal

import psycopg
from checks import PRIMARY, REPLICAS, check, eq, run_sections, section, summary
from psycopg import errors
from psycopg.types.json import Jsonb

T_ITEMS = "drv_py3_items"
T_COPY = "drv_py3_copy"


def connect(autocommit=True):
    # Connection parameters come from the libpq environment (PGHOST, PGPORT, ...).
    return psycopg.connect(autocommit=autocommit, prepare_threshold=0, connect_timeout=10)


def port_of(cur):
    cur.execute("SELECT inet_server_port()")
    return cur.fetchone()[0]


UNICODE = "héllo wörld – 🐘🚀👩‍👩‍👧 漢字かなカナ 한국어 Ελληνικά עברית \t\\ 'quote\" end"
ALL_BYTES = bytes(range(256))
TS_UTC = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
TS_OFFSET = dt.datetime(1999, 12, 31, 22, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
JSON = {"a": [1, 2.5, None, True, False], "ü": "🐘", "nested": {"k": "v", "empty": {}}, "big": 12345678901234}
NUMERICS = [
    Decimal("12345678901234567890.123456789012345678901234567890"),
    Decimal("-0.000000000000000000000000000000000001"),
    Decimal("99999999999999999999999999999999999999999999999999"),
    Decimal("0"),
]
ROUND_TRIPS = [
    ("int2 min", "int2", -32768),
    ("int2 max", "int2", 32767),
    ("int4 min", "int4", -2147483648),
    ("int4 max", "int4", 2147483647),
    ("int8 min", "int8", -9223372036854775808),
    ("int8 max", "int8", 9223372036854775807),
    *[(f"numeric {i}", "numeric", n) for i, n in enumerate(NUMERICS)],
    ("text utf-8", "text", UNICODE),
    ("text empty", "text", ""),
    ("bytea 256 values", "bytea", ALL_BYTES),
    ("timestamptz utc", "timestamptz", TS_UTC),
    ("timestamptz offset", "timestamptz", TS_OFFSET),
    ("int4[]", "int4[]", [1, -2, None, 2147483647, -2147483648]),
    ("text[]", "text[]", ["a", "b c", "", None, "🐘", 'quo"te', "com,ma", "{brace}", "NULL"]),
    ("int8 null", "int8", None),
    ("text null", "text", None),
    ("bytea null", "bytea", None),
]


@section
def reads_land_on_replicas():
    with connect() as conn:
        ports = []
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                for _ in range(15):
                    ports.append(port_of(cur))
        check("30 reads (text and binary) ran on replicas", set(ports) <= REPLICAS, f"ports {sorted(set(ports))}, replicas {REPLICAS}")
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT pg_is_in_recovery(), inet_server_port() FROM generate_series(1, %b) g", (3,))
            rows = cur.fetchall()
            check("a parameterized read ran on a replica in recovery", all(r[0] and r[1] in REPLICAS for r in rows) and len(rows) == 3, rows)
            cur.execute(f"SELECT count(*) FROM {T_ITEMS}")
            check("a read of a table ran", cur.fetchone() is not None)


@section
def server_side_prepared_statements_are_reused():
    with connect() as conn, conn.cursor(binary=True) as cur:
        results = []
        for i in range(60):
            cur.execute("SELECT %b::int4 * 2, inet_server_port()", (i,), prepare=True)
            results.append(cur.fetchone())
        eq("one prepared statement run 60 times with new parameters", [r[0] for r in results], [i * 2 for i in range(60)])
        check("every run was a read on a replica", {r[1] for r in results} <= REPLICAS, {r[1] for r in results})
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql")
        check("the server holds protocol-level prepared statements", cur.fetchone()[0] >= 1)


def round_trip(binary):
    kind = "binary" if binary else "text"
    with connect() as conn, conn.cursor(binary=binary) as cur:
        placeholder = "%b" if binary else "%t"
        for name, typ, value in ROUND_TRIPS:
            cur.execute(f"SELECT {placeholder}::{typ}", (value,))
            eq(f"{kind}: {name} round trip", cur.fetchone()[0], value)
        cur.execute(f"SELECT {placeholder}::jsonb", (Jsonb(JSON),))
        eq(f"{kind}: jsonb round trip", cur.fetchone()[0], JSON)
        # Values the server makes, read back in this format.
        cur.execute(
            "SELECT 32767::int2, 9223372036854775807::int8, '1.000000000000000000000000000001'::numeric, "
            "decode(string_agg(lpad(to_hex(g), 2, '0'), ''), 'hex'), '{\"x\": [1, null]}'::jsonb, "
            "ARRAY[1, NULL, 3]::int[], ARRAY['α', NULL]::text[], NULL::int4, "
            "'2024-02-29 23:59:59.123456+00'::timestamptz "
            "FROM generate_series(0, 255) g"
        )
        eq(
            f"{kind}: server-made values",
            cur.fetchone(),
            (32767, 9223372036854775807, Decimal("1.000000000000000000000000000001"), ALL_BYTES, {"x": [1, None]}, [1, None, 3], ["α", None], None, TS_UTC),
        )
        # Many columns of mixed types in one row, with parameters in the same format.
        values = [v for _, _, v in ROUND_TRIPS]
        casts = ", ".join(f"{placeholder}::{typ}" for _, typ, _ in ROUND_TRIPS)
        cur.execute(f"SELECT {casts}", values)
        eq(f"{kind}: {len(values)} parameters in one statement", list(cur.fetchone()), values)


@section
def type_round_trips_binary():
    round_trip(True)


@section
def type_round_trips_text():
    round_trip(False)


@section
def writes_and_read_your_writes():
    with connect() as conn, conn.cursor(binary=True) as cur:
        cur.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, %b) RETURNING inet_server_port()", (1, UNICODE))
        eq("INSERT ... RETURNING ran on the primary", cur.fetchone()[0], PRIMARY)
        token = conn.info.parameter_status("pgroute.lsn")
        check("the write's LSN is reported as ParameterStatus pgroute.lsn", token is not None and "/" in token, token)
        cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = %b", (1,))
        eq("the read right after the INSERT sees it", cur.fetchone(), (UNICODE,))
        stale = []
        for i in range(2, 32):
            cur.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, %b)", (i, f"v{i}"))
            cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = %b", (i,))
            row = cur.fetchone()
            if row != (f"v{i}",):
                stale.append((i, row))
        check("30 INSERTs each read back at once", not stale, stale)
        stale = []
        for i in range(10):
            cur.execute(f"UPDATE {T_ITEMS} SET v = %b WHERE id = 1 RETURNING inet_server_port()", (f"u{i}",))
            eq(f"UPDATE {i} ran on the primary", cur.fetchone()[0], PRIMARY)
            cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = 1")
            row = cur.fetchone()
            if row != (f"u{i}",):
                stale.append((i, row))
        check("10 UPDATEs each read back at once", not stale, stale)
        cur.execute(f"DELETE FROM {T_ITEMS} WHERE id = 31")
        cur.execute(f"SELECT count(*) FROM {T_ITEMS} WHERE id = 31")
        eq("a DELETE is seen at once", cur.fetchone()[0], 0)
        # Once the replicas have replayed the writes, this session's reads go back to them.
        deadline = time.monotonic() + 10
        port = port_of(cur)
        while port not in REPLICAS and time.monotonic() < deadline:
            time.sleep(0.05)
            port = port_of(cur)
        check("reads return to the replicas after the writes are replayed", port in REPLICAS, port)


@section
def pipeline_mode():
    """In pipeline mode psycopg sends no Sync until the pipeline syncs; fetching a result in
    between sends a Flush. A write after that Flush must still run on the primary."""
    # A fresh session each time: after a write, read-your-writes may keep reads on the primary.
    with connect() as conn:
        with conn.pipeline() as p, conn.cursor(binary=True) as read, conn.cursor(binary=True) as write:
            read.execute("SELECT inet_server_port()")
            write.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, 'pipe') RETURNING inet_server_port()", (200,))
            p.sync()
            eq("a pipelined read + write up to one Sync ran on the primary", (read.fetchone()[0], write.fetchone()[0]), (PRIMARY, PRIMARY))
    with connect() as conn:
        try:
            with conn.pipeline() as p, conn.cursor(binary=True) as read, conn.cursor(binary=True) as write:
                read.execute("SELECT inet_server_port()")
                port = read.fetchone()[0]  # sends Flush: the read is answered before the Sync
                check("a pipelined read answered before its Sync ran on a replica", port in REPLICAS, port)
                write.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, 'pipe after flush') RETURNING inet_server_port()", (201,))
                p.sync()
                eq("a pipelined write after that Flush ran on the primary", write.fetchone()[0], PRIMARY)
        except psycopg.Error as e:
            check("a pipelined write after that Flush ran on the primary", False, f"{type(e).__name__} {e.sqlstate}: {e}")
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {T_ITEMS} WHERE id IN (200, 201) ORDER BY id")
        eq("both pipelined inserts are read back", cur.fetchall(), [(200,), (201,)])


def pipeline_with_an_error(direct, autocommit):
    """Sync-terminated groups in one pipeline, one failing in executemany(returning=True):
    what the driver raises and which rows exist afterwards."""
    table = f"drv_py3_pipe_{'direct' if direct else 'proxied'}_{int(autocommit)}"
    params = {"port": PRIMARY} if direct else {}
    seen = []
    with psycopg.connect(autocommit=True, connect_timeout=10, **params) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    with psycopg.connect(autocommit=autocommit, connect_timeout=10, **params) as conn:
        cur = conn.cursor()
        try:
            with conn.pipeline() as p:
                cur.execute(f"INSERT INTO {table} VALUES (1, 'a')")
                p.sync()
                try:
                    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s) RETURNING id",
                                    [(2, "b"), (1, "dup"), (3, "c")], returning=True)
                    p.sync()
                except psycopg.Error as e:
                    seen.append(("executemany", type(e).__name__, e.sqlstate))
                cur.execute(f"INSERT INTO {table} VALUES (4, 'd')")
                p.sync()
        except psycopg.Error as e:
            seen.append(("pipeline", type(e).__name__, e.sqlstate))
        if not autocommit:
            conn.rollback()
        seen.append(("rows", conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}").fetchone()[0]))
    return seen


@section
def pipeline_error_is_relayed_as_postgres_sends_it():
    """psycopg's pipeline mode with an error in one group: PostgreSQL discards that group up to
    its Sync; the driver sees the same errors and rows through pgroute as directly."""
    for autocommit in (True, False):
        try:
            proxied = pipeline_with_an_error(False, autocommit)
        except psycopg.Error as e:
            proxied = [("session", type(e).__name__, e.sqlstate)]
        eq(f"pipeline with an error (autocommit={autocommit}) as on the primary",
           proxied, pipeline_with_an_error(True, autocommit))


@section
def transactions_run_on_the_primary():
    with connect() as conn, conn.cursor(binary=True) as cur:
        with conn.transaction():
            ports = [port_of(cur) for _ in range(5)]
            cur.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, 'tx')", (100,))
            cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = %b", (100,))
            eq("the transaction sees its own insert", cur.fetchone(), ("tx",))
        check("every statement of the transaction ran on the primary", set(ports) == {PRIMARY}, ports)
        cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = 100")
        eq("the committed row is read back", cur.fetchone(), ("tx",))

        class Abort(Exception):
            pass

        try:
            with conn.transaction():
                cur.execute(f"INSERT INTO {T_ITEMS} VALUES (101, 'rolled back')")
                raise Abort()
        except Abort:
            pass
        cur.execute(f"SELECT count(*) FROM {T_ITEMS} WHERE id = 101")
        eq("a rolled-back insert is gone", cur.fetchone()[0], 0)
        with conn.transaction():
            cur.execute(f"INSERT INTO {T_ITEMS} VALUES (102, 'outer')")
            try:
                with conn.transaction():  # a savepoint
                    cur.execute(f"INSERT INTO {T_ITEMS} VALUES (103, 'inner')")
                    raise Abort()
            except Abort:
                pass
        cur.execute(f"SELECT id FROM {T_ITEMS} WHERE id IN (102, 103) ORDER BY id")
        eq("a savepoint rolled back only its own insert", cur.fetchall(), [(102,)])

    # Without autocommit psycopg opens a transaction before the first statement.
    with connect(autocommit=False) as conn, conn.cursor() as cur:
        ports = [port_of(cur) for _ in range(3)]
        check("non-autocommit reads run in a transaction on the primary", set(ports) == {PRIMARY}, ports)
        eq("the connection is in a transaction", conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS)
        conn.commit()
        eq("after commit it is idle", conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)


COPY_ROWS = [(i, f"row {i} {UNICODE if i % 7 == 0 else ''}", bytes([i % 256, 0, 255]) if i % 5 else ALL_BYTES, Decimal(i) / Decimal(7) if i % 3 else None) for i in range(1, 2001)]


@section
def copy_in_and_out():
    want = [(i, v, b, n.quantize(Decimal("1e-20")) if n is not None else None) for i, v, b, n in COPY_ROWS]
    with connect() as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {T_COPY} (id, v, b, n) FROM STDIN") as copy:
            for i, v, b, n in want[:1000]:
                copy.write_row((i, v, b, n))
        eq("COPY FROM STDIN (text) row count", cur.rowcount, 1000)
        with cur.copy(f"COPY {T_COPY} (id, v, b, n) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "bytea", "numeric"])
            for row in want[1000:]:
                copy.write_row(row)
        eq("COPY FROM STDIN (binary) row count", cur.rowcount, 1000)
        cur.execute(f"SELECT count(*), sum(id) FROM {T_COPY}")
        eq("the copied rows are read back at once", cur.fetchone(), (2000, sum(range(1, 2001))))

        got = []
        with cur.copy(f"COPY (SELECT id, v, b, n FROM {T_COPY} ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "bytea", "numeric"])
            got = list(copy.rows())
        check("COPY TO STDOUT (text) returns every row exactly", got == want, f"{len(got)} rows; first difference: {next(((g, w) for g, w in zip(got, want) if g != w), None)}")
        with cur.copy(f"COPY (SELECT id, v, b, n FROM {T_COPY} ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "bytea", "numeric"])
            got = list(copy.rows())
        check("COPY TO STDOUT (binary) returns every row exactly", got == want, f"{len(got)} rows")
        with cur.copy("COPY (SELECT inet_server_port()) TO STDOUT") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        eq("COPY runs on the primary", int(data.strip()), PRIMARY)
        try:
            with cur.copy(f"COPY {T_COPY} (id, v) FROM STDIN") as copy:
                copy.write_row((1, "duplicate"))
            check("a COPY that violates a key fails", False, "no error")
        except errors.UniqueViolation as e:
            eq("a failing COPY reports 23505", e.sqlstate, "23505")
        eq("the connection works after a failed COPY", port_of(cur) in REPLICAS | {PRIMARY}, True)
        cur.execute(f"SELECT count(*) FROM {T_COPY}")
        eq("the failed COPY added nothing", cur.fetchone()[0], 2000)


@section
def errors_pass_through():
    with connect() as conn, conn.cursor(binary=True) as cur:
        cur.execute(f"INSERT INTO {T_ITEMS} VALUES (500, 'first')")
        try:
            cur.execute(f"INSERT INTO {T_ITEMS} VALUES (%b, 'again')", (500,))
            check("a duplicate key fails", False, "no error")
        except errors.UniqueViolation as e:
            eq("unique violation has SQLSTATE 23505", e.sqlstate, "23505")
            eq("the error names the constraint", e.diag.constraint_name, f"{T_ITEMS}_pkey")
            check("the error has the server's detail", "already exists" in (e.diag.message_detail or ""), e.diag.message_detail)
        eq("the connection is usable after the error", port_of(cur) in REPLICAS | {PRIMARY}, True)
        cur.execute(f"SELECT v FROM {T_ITEMS} WHERE id = 500")
        eq("and reads the first row", cur.fetchone(), ("first",))
        try:
            cur.execute("SELECT 1 / %b::int4", (0,))
            check("division by zero fails", False, "no error")
        except errors.DivisionByZero as e:
            eq("a failed read reports 22012", e.sqlstate, "22012")
        try:
            cur.execute("SELEC 1")
            check("a syntax error fails", False, "no error")
        except errors.SyntaxError as e:
            eq("a syntax error reports 42601", e.sqlstate, "42601")
        try:
            cur.execute("SELECT * FROM drv_py3_no_such_table")
            check("an unknown table fails", False, "no error")
        except errors.UndefinedTable as e:
            eq("an unknown table reports 42P01", e.sqlstate, "42P01")
        cur.execute("SELECT %b::int4 + 1", (41,))
        eq("the prepared path still works after errors", cur.fetchone()[0], 42)

        # An error inside a transaction: the transaction is aborted, then rolls back cleanly.
        try:
            with conn.transaction():
                cur.execute(f"INSERT INTO {T_ITEMS} VALUES (501, 'in tx')")
                cur.execute(f"INSERT INTO {T_ITEMS} VALUES (500, 'dup in tx')")
            check("a duplicate inside a transaction fails", False, "no error")
        except errors.UniqueViolation as e:
            eq("inside a transaction: 23505", e.sqlstate, "23505")
        eq("the transaction was rolled back", conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)
        cur.execute(f"SELECT count(*) FROM {T_ITEMS} WHERE id = 501")
        eq("its other insert is gone", cur.fetchone()[0], 0)


if __name__ == "__main__":
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__} libpq {psycopg.pq.version()}), primary {PRIMARY}, replicas {sorted(REPLICAS)}")
    run_sections()
    sys.exit(summary())
