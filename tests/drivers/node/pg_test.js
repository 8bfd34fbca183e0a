// node-postgres (`pg`) through pgroute: simple queries, parameterized queries (extended
// protocol, unnamed statement), named prepared statements reused across pooled server
// connections, transactions, errors, type round trips, routing and read-your-writes.
//
// Run by tests/drivers.rs with PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE pointing at pgroute
// and PRIMARY_PORT/REPLICA_PORTS naming the nodes; the table drv_node_items exists. Prints one
// line per check and `N passed, M failed` last; exits 1 on any failure.
'use strict';

const assert = require('node:assert');
const pg = require('pg');

const PRIMARY = Number(process.env.PRIMARY_PORT);
const REPLICAS = new Set(process.env.REPLICA_PORTS.split(',').map(Number));
const T = 'drv_node_items';

let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${detail === undefined ? '' : detail}`);
  }
}

function eq(name, got, want) {
  try {
    assert.deepStrictEqual(got, want);
    check(name, true);
  } catch (e) {
    check(name, false, `got ${show(got)}, want ${show(want)}`);
  }
}

function show(v) {
  return require('node:util').inspect(v, { depth: 5, breakLength: Infinity });
}

const allReplicas = (ports) => ports.every((p) => REPLICAS.has(p));

async function connect() {
  // Connection parameters come from the libpq-style environment (PGHOST, PGPORT, ...).
  const client = new pg.Client({ connectionTimeoutMillis: 10000, statement_timeout: 20000 });
  await client.connect();
  return client;
}

async function portOf(client, config) {
  const res = await client.query(config || 'SELECT inet_server_port() AS port');
  return res.rows[0].port;
}

const UNICODE = "héllo wörld – 🐘🚀👩‍👩‍👧 漢字かなカナ 한국어 Ελληνικά עברית \t\\ 'quote\" end";
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const JSON_VALUE = { a: [1, 2.5, null, true, false], ü: '🐘', nested: { k: 'v', empty: {} }, big: 12345678901234 };

const sections = [];
const section = (name, fn) => sections.push([name, fn]);

section('reads land on replicas', async () => {
  const c = await connect();
  try {
    const simple = [];
    for (let i = 0; i < 10; i++) simple.push(await portOf(c));
    check('10 simple-query reads ran on replicas', allReplicas(simple), simple);
    const extended = [];
    for (let i = 0; i < 10; i++) {
      extended.push(await portOf(c, { text: 'SELECT inet_server_port() AS port, $1::int AS i', values: [i] }));
    }
    check('10 parameterized (extended protocol) reads ran on replicas', allReplicas(extended), extended);
    const res = await c.query('SELECT pg_is_in_recovery() AS rec, inet_server_port() AS port');
    check('a read sees a server in recovery', res.rows[0].rec === true && REPLICAS.has(res.rows[0].port), show(res.rows));
    // `rows` makes pg fetch the portal in chunks: Execute with a row limit, then Flush, until done.
    const chunked = await c.query({ text: 'SELECT g, inet_server_port() AS port FROM generate_series(1, $1::int) g', values: [10], rows: 3 });
    eq('a portal read in chunks of 3 (Execute + Flush) returns every row', chunked.rows.map((r) => r.g), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    check('and ran on a replica', allReplicas(chunked.rows.map((r) => r.port)), show(chunked.rows));
  } finally {
    await c.end();
  }
});

section('named prepared statements are reused', async () => {
  const c = await connect();
  try {
    const results = [];
    for (let i = 0; i < 100; i++) {
      const res = await c.query({ name: 'q1', text: 'SELECT $1::int * 2 AS doubled, inet_server_port() AS port', values: [i] });
      results.push(res.rows[0]);
    }
    eq('named statement q1 run 100 times', results.map((r) => r.doubled), Array.from({ length: 100 }, (_, i) => i * 2));
    check('every run was a read on a replica', allReplicas(results.map((r) => r.port)), show([...new Set(results.map((r) => r.port))]));
    const ports = [];
    for (let i = 0; i < 20; i++) {
      const res = await c.query({ name: 'w1', text: `INSERT INTO ${T} VALUES ($1, $2) RETURNING inet_server_port() AS port`, values: [1000 + i, `w${i}`] });
      ports.push(res.rows[0].port);
    }
    eq('named INSERT w1 run 20 times ran on the primary', [...new Set(ports)], [PRIMARY]);
    const count = await c.query({ name: 'c1', text: `SELECT count(*)::int AS n FROM ${T} WHERE id >= $1 AND id < $2`, values: [1000, 1020] });
    eq('its rows are read back at once', count.rows[0].n, 20);
    for (let i = 0; i < 5; i++) {
      const r = await c.query({ name: 'q1', text: 'SELECT $1::int * 2 AS doubled, inet_server_port() AS port', values: [i] });
      eq(`q1 again after writes (${i})`, r.rows[0].doubled, i * 2);
    }
  } finally {
    await c.end();
  }
});

section('type round trips', async () => {
  const c = await connect();
  try {
    const one = async (sql, values) => (await c.query(sql, values)).rows[0].v;
    eq('int2 min', await one('SELECT $1::int2 AS v', [-32768]), -32768);
    eq('int4 max', await one('SELECT $1::int4 AS v', [2147483647]), 2147483647);
    eq('int4 min', await one('SELECT $1::int4 AS v', [-2147483648]), -2147483648);
    eq('int8 max as a string', await one('SELECT $1::int8 AS v', ['9223372036854775807']), '9223372036854775807');
    eq('int8 min as a string', await one('SELECT $1::int8 AS v', ['-9223372036854775808']), '-9223372036854775808');
    eq('int8 from a simple query', await one('SELECT 9223372036854775807::int8 AS v'), '9223372036854775807');
    const numeric = '12345678901234567890.123456789012345678901234567890';
    eq('numeric high precision as a string', await one('SELECT $1::numeric AS v', [numeric]), numeric);
    eq('text utf-8', await one('SELECT $1::text AS v', [UNICODE]), UNICODE);
    eq('text utf-8 from a simple query', await one(`SELECT '${UNICODE.replace(/'/g, "''")}'::text AS v`), UNICODE);
    eq('bytea of all 256 byte values', await one('SELECT $1::bytea AS v', [ALL_BYTES]), ALL_BYTES);
    eq('bytea made by the server', await one("SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), ''), 'hex') AS v FROM generate_series(0, 255) g"), ALL_BYTES);
    eq('jsonb', await one('SELECT $1::jsonb AS v', [JSON.stringify(JSON_VALUE)]), JSON_VALUE);
    eq('jsonb from a simple query', await one(`SELECT '{"x": [1, null, "🐘"]}'::jsonb AS v`), { x: [1, null, '🐘'] });
    eq('int[]', await one('SELECT $1::int[] AS v', [[1, -2, null, 2147483647]]), [1, -2, null, 2147483647]);
    eq('text[]', await one('SELECT $1::text[] AS v', [['a', 'b c', '', null, '🐘', 'quo"te', 'com,ma', '{brace}', 'NULL']]), ['a', 'b c', '', null, '🐘', 'quo"te', 'com,ma', '{brace}', 'NULL']);
    eq('int8[] as strings', await one("SELECT '{1,9223372036854775807}'::int8[] AS v"), ['1', '9223372036854775807']);
    const ts = new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 123));
    eq('timestamptz', (await one('SELECT $1::timestamptz AS v', [ts])).toISOString(), ts.toISOString());
    eq('timestamptz with an offset', (await one("SELECT '1999-12-31 22:00:00.5+05:30'::timestamptz AS v")).toISOString(), '1999-12-31T16:30:00.500Z');
    eq('NULL int', await one('SELECT $1::int AS v', [null]), null);
    eq('NULL text from a simple query', await one('SELECT NULL::text AS v'), null);
    const row = (await c.query('SELECT $1::int2 AS a, $2::int8 AS b, $3::text AS c, $4::bytea AS d, $5::jsonb AS e, $6::int[] AS f, $7::timestamptz AS g, $8::text AS h',
      [32767, '-1', UNICODE, ALL_BYTES, JSON.stringify(JSON_VALUE), [3, null], ts, null])).rows[0];
    eq('8 parameters in one statement', row, { a: 32767, b: '-1', c: UNICODE, d: ALL_BYTES, e: JSON_VALUE, f: [3, null], g: ts, h: null });
  } finally {
    await c.end();
  }
});

section('writes and read-your-writes', async () => {
  const c = await connect();
  try {
    eq('INSERT ... RETURNING ran on the primary', await portOf(c, { text: `INSERT INTO ${T} VALUES ($1, $2) RETURNING inet_server_port() AS port`, values: [1, UNICODE] }), PRIMARY);
    eq('the read right after the INSERT sees it', (await c.query(`SELECT v FROM ${T} WHERE id = $1`, [1])).rows, [{ v: UNICODE }]);
    const stale = [];
    for (let i = 2; i < 32; i++) {
      if (i % 2) await c.query(`INSERT INTO ${T} VALUES (${i}, 'v${i}')`); // simple query
      else await c.query(`INSERT INTO ${T} VALUES ($1, $2)`, [i, `v${i}`]); // extended
      const res = i % 3 ? await c.query(`SELECT v FROM ${T} WHERE id = ${i}`) : await c.query(`SELECT v FROM ${T} WHERE id = $1`, [i]);
      if (res.rows.length !== 1 || res.rows[0].v !== `v${i}`) stale.push([i, res.rows]);
    }
    check('30 INSERTs (simple and extended) each read back at once', stale.length === 0, show(stale));
    const upd = await c.query(`UPDATE ${T} SET v = 'updated' WHERE id <= 10`);
    eq('UPDATE row count', upd.rowCount, 10);
    eq('the UPDATE is seen at once', (await c.query(`SELECT count(*)::int AS n FROM ${T} WHERE v = 'updated'`)).rows[0].n, 10);
    let port = await portOf(c);
    const deadline = Date.now() + 10000;
    while (!REPLICAS.has(port) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      port = await portOf(c);
    }
    check('reads return to the replicas after the writes are replayed', REPLICAS.has(port), port);
  } finally {
    await c.end();
  }
});

section('transactions run on the primary', async () => {
  const c = await connect();
  try {
    await c.query('BEGIN');
    const ports = [await portOf(c), await portOf(c, { text: 'SELECT inet_server_port() AS port, $1::int', values: [1] })];
    await c.query(`INSERT INTO ${T} VALUES ($1, 'tx')`, [100]);
    eq('the transaction sees its own insert', (await c.query(`SELECT v FROM ${T} WHERE id = 100`)).rows, [{ v: 'tx' }]);
    await c.query('COMMIT');
    eq('every statement of the transaction ran on the primary', [...new Set(ports)], [PRIMARY]);
    eq('the committed row is read back', (await c.query(`SELECT v FROM ${T} WHERE id = $1`, [100])).rows, [{ v: 'tx' }]);
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${T} VALUES (101, 'rolled back')`);
    await c.query('ROLLBACK');
    eq('a rolled-back insert is gone', (await c.query(`SELECT count(*)::int AS n FROM ${T} WHERE id = 101`)).rows[0].n, 0);
    await c.query('BEGIN');
    await c.query({ name: 'tx_insert', text: `INSERT INTO ${T} VALUES ($1, $2)`, values: [102, 'named in tx'] });
    await c.query('SAVEPOINT s1');
    await c.query({ name: 'tx_insert', text: `INSERT INTO ${T} VALUES ($1, $2)`, values: [103, 'rolled back to savepoint'] });
    await c.query('ROLLBACK TO SAVEPOINT s1');
    await c.query('COMMIT');
    eq('a savepoint rolled back only its own insert', (await c.query(`SELECT id FROM ${T} WHERE id IN (102, 103) ORDER BY id`)).rows, [{ id: 102 }]);
  } finally {
    await c.end();
  }
});

section('errors pass through', async () => {
  const c = await connect();
  const expectError = async (name, fn, code) => {
    try {
      await fn();
      check(name, false, 'no error');
      return null;
    } catch (e) {
      eq(name, e.code, code);
      return e;
    }
  };
  try {
    await c.query(`INSERT INTO ${T} VALUES (500, 'first')`);
    const e = await expectError('unique violation (extended) has code 23505', () => c.query(`INSERT INTO ${T} VALUES ($1, 'again')`, [500]), '23505');
    if (e) {
      eq('the error names the constraint', e.constraint, `${T}_pkey`);
      check('the error has the server\'s detail', /already exists/.test(e.detail || ''), e.detail);
    }
    await expectError('unique violation (simple) has code 23505', () => c.query(`INSERT INTO ${T} VALUES (500, 'again')`), '23505');
    await expectError('unique violation (named) has code 23505', () => c.query({ name: 'dup', text: `INSERT INTO ${T} VALUES ($1, 'again')`, values: [500] }), '23505');
    eq('the connection is usable after the errors', (await c.query(`SELECT v FROM ${T} WHERE id = $1`, [500])).rows, [{ v: 'first' }]);
    await expectError('division by zero in a read: 22012', () => c.query('SELECT 1 / $1::int AS v', [0]), '22012');
    await expectError('a syntax error: 42601', () => c.query('SELEC 1'), '42601');
    await expectError('an unknown table at Parse: 42P01', () => c.query('SELECT * FROM drv_node_no_such_table WHERE id = $1', [1]), '42P01');
    eq('the named statement works after the errors', (await c.query({ name: 'q1', text: 'SELECT $1::int * 2 AS doubled', values: [21] })).rows[0].doubled, 42);
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${T} VALUES (501, 'in tx')`);
    await expectError('inside a transaction: 23505', () => c.query(`INSERT INTO ${T} VALUES (500, 'dup in tx')`), '23505');
    await expectError('the aborted transaction refuses statements: 25P02', () => c.query('SELECT 1'), '25P02');
    await c.query('ROLLBACK');
    eq('its other insert is gone', (await c.query(`SELECT count(*)::int AS n FROM ${T} WHERE id = 501`)).rows[0].n, 0);
  } finally {
    await c.end();
  }
});

section('a pool of clients at once', async () => {
  const pool = new pg.Pool({ max: 4, connectionTimeoutMillis: 10000 });
  try {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => pool.query({ name: 'sq', text: 'SELECT $1::int8 * $1::int8 AS sq, inet_server_port() AS port', values: [i] })),
    );
    eq('40 named queries over 4 clients at once return their own results', results.map((r) => r.rows[0].sq), Array.from({ length: 40 }, (_, i) => String(i * i)));
    check('all of them on replicas', allReplicas(results.map((r) => r.rows[0].port)), show([...new Set(results.map((r) => r.rows[0].port))]));
  } finally {
    await pool.end();
  }
});

async function main() {
  console.log(`pg ${require('pg/package.json').version}, node ${process.version}, primary ${PRIMARY}, replicas ${[...REPLICAS].sort()}`);
  for (const [name, fn] of sections) {
    console.log(`-- ${name}`);
    const started = Date.now();
    try {
      await Promise.race([fn(), new Promise((_, reject) => setTimeout(() => reject(new Error('section timed out after 30 s')), 30000).unref())]);
    } catch (e) {
      check(`${name} (no exception)`, false, e && e.stack ? e.stack : show(e));
    }
    console.log(`   (${((Date.now() - started) / 1000).toFixed(2)}s)`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.log(`FAIL unexpected: ${e && e.stack}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exitCode = 1;
});
