// The PostgreSQL JDBC driver (pgjdbc) through pgroute, with prepareThreshold=1 so that every
// PreparedStatement is a named server-side statement from its first execution: routing, batches,
// transactions, errors and type round trips.
//
// Run by tests/drivers.rs (javac -cp postgresql.jar, then java -cp) with PGHOST/PGPORT/PGUSER/
// PGPASSWORD/PGDATABASE pointing at pgroute and PRIMARY_PORT/REPLICA_PORTS naming the nodes; the
// table drv_jdbc_items exists. Prints one line per check and `N passed, M failed` last; exits 1 on
// any failure.

import java.math.BigDecimal;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;

public class JdbcDriverTest {
    static final String T = "drv_jdbc_items";
    static final int PRIMARY = Integer.parseInt(System.getenv("PRIMARY_PORT"));
    static final Set<Integer> REPLICAS = new HashSet<>();
    static final String UNICODE =
        "héllo wörld – 🐘🚀👩‍👩‍👧 漢字かなカナ 한국어 Ελληνικά עברית \t\\ 'quote\" end";
    static final byte[] ALL_BYTES = new byte[256];

    static int passed = 0;
    static int failed = 0;

    static {
        for (String p : System.getenv("REPLICA_PORTS").split(",")) {
            REPLICAS.add(Integer.parseInt(p));
        }
        for (int i = 0; i < 256; i++) {
            ALL_BYTES[i] = (byte) i;
        }
    }

    static void check(String name, boolean ok, Object detail) {
        if (ok) {
            passed++;
            System.out.println("ok   " + name);
        } else {
            failed++;
            System.out.println("FAIL " + name + ": " + detail);
        }
    }

    static void eq(String name, Object got, Object want) {
        boolean same = (got instanceof byte[] && want instanceof byte[])
            ? Arrays.equals((byte[]) got, (byte[]) want)
            : (got instanceof Object[] && want instanceof Object[])
                ? Arrays.deepEquals((Object[]) got, (Object[]) want)
                : Objects.equals(got, want);
        check(name, same, "got " + show(got) + ", want " + show(want));
    }

    static String show(Object v) {
        if (v instanceof byte[]) {
            return Arrays.toString((byte[]) v);
        }
        if (v instanceof Object[]) {
            return Arrays.deepToString((Object[]) v);
        }
        return String.valueOf(v);
    }

    static Connection connect() throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/"
            + System.getenv("PGDATABASE");
        Properties props = new Properties();
        props.setProperty("user", System.getenv("PGUSER"));
        props.setProperty("password", System.getenv("PGPASSWORD"));
        props.setProperty("prepareThreshold", "1");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "30");
        return DriverManager.getConnection(url, props);
    }

    static int portOf(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT inet_server_port()");
             ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getInt(1);
        }
    }

    interface Section {
        void run() throws Exception;
    }

    static void section(String name, Section body) {
        System.out.println("-- " + name);
        long started = System.nanoTime();
        try {
            body.run();
        } catch (Exception e) {
            java.io.StringWriter sw = new java.io.StringWriter();
            e.printStackTrace(new java.io.PrintWriter(sw));
            String state = e instanceof SQLException ? " [SQLState " + ((SQLException) e).getSQLState() + "]" : "";
            check(name + " (no exception)", false, sw + state);
        }
        System.out.printf("   (%.2fs)%n", (System.nanoTime() - started) / 1e9);
    }

    public static void main(String[] args) throws Exception {
        System.out.println("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ", java "
            + System.getProperty("java.version") + ", primary " + PRIMARY + ", replicas " + new TreeSet<>(REPLICAS));

        section("connecting is not a write", () -> {
            // pgjdbc runs `SET extra_float_digits = 3` and `SET application_name = ...` on every new
            // connection. Neither writes anything: the session has no write of its own to read
            // back, so pgroute must not hand it a read-your-writes token (pgroute.lsn).
            try (Connection c = connect()) {
                // pgroute reports a token after the ReadyForQuery of the statement that earned it:
                // pgjdbc reads it along with the next reply.
                portOf(c);
                String token = c.unwrap(PGConnection.class).getParameterStatus("pgroute.lsn");
                check("no pgroute.lsn token right after connecting", token == null || token.equals("0/0"),
                    "pgroute.lsn = " + token + ": the session's reads must wait for a replica to replay up to it");
            }
        });

        section("reads land on replicas", () -> {
            try (Connection c = connect()) {
                // Under write load a session holding a read-your-writes token reads from the primary
                // until the monitor sees a replica past it (see the section above): wait for that.
                long deadline = System.currentTimeMillis() + 10_000;
                int first = portOf(c);
                int onPrimary = 0;
                while (!REPLICAS.contains(first) && System.currentTimeMillis() < deadline) {
                    onPrimary++;
                    Thread.sleep(20);
                    first = portOf(c);
                }
                if (onPrimary > 0) {
                    System.out.println("     (" + onPrimary + " reads of this fresh session ran on the primary first)");
                }
                check("a read of a fresh session runs on a replica", REPLICAS.contains(first), first);
                List<Integer> ports = new ArrayList<>();
                try (PreparedStatement ps = c.prepareStatement("SELECT inet_server_port(), pg_is_in_recovery(), ?::int")) {
                    for (int i = 0; i < 30; i++) {
                        ps.setInt(1, i);
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            ports.add(rs.getInt(1));
                            if (!rs.getBoolean(2) || rs.getInt(3) != i) {
                                check("read " + i + " in recovery with its parameter", false, rs.getBoolean(2) + " " + rs.getInt(3));
                            }
                        }
                    }
                    check("the statement is server-prepared (prepareThreshold=1)",
                        ps.unwrap(PGStatement.class).isUseServerPrepare(), "not server-prepared");
                }
                check("30 executions of one named statement ran on replicas", REPLICAS.containsAll(ports), ports);
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT inet_server_port()")) {
                    rs.next();
                    check("a plain Statement read ran on a replica", REPLICAS.contains(rs.getInt(1)), rs.getInt(1));
                }
            }
        });

        section("writes and read-your-writes", () -> {
            try (Connection c = connect()) {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + T + " VALUES (?, ?) RETURNING inet_server_port()");
                     PreparedStatement sel = c.prepareStatement("SELECT v FROM " + T + " WHERE id = ?")) {
                    List<Integer> ports = new ArrayList<>();
                    List<String> stale = new ArrayList<>();
                    for (int i = 1; i <= 30; i++) {
                        ins.setInt(1, i);
                        ins.setString(2, i == 1 ? UNICODE : "v" + i);
                        try (ResultSet rs = ins.executeQuery()) {
                            rs.next();
                            ports.add(rs.getInt(1));
                        }
                        sel.setInt(1, i);
                        try (ResultSet rs = sel.executeQuery()) {
                            String want = i == 1 ? UNICODE : "v" + i;
                            if (!rs.next() || !want.equals(rs.getString(1))) {
                                stale.add("id " + i);
                            }
                        }
                    }
                    check("30 INSERTs ran on the primary", new HashSet<>(ports).equals(Set.of(PRIMARY)), ports);
                    check("each INSERT was read back at once", stale.isEmpty(), stale);
                }
                try (PreparedStatement upd = c.prepareStatement("UPDATE " + T + " SET v = ? WHERE id <= ?")) {
                    upd.setString(1, "updated");
                    upd.setInt(2, 10);
                    eq("UPDATE count", upd.executeUpdate(), 10);
                }
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT count(*) FROM " + T + " WHERE v = 'updated'")) {
                    rs.next();
                    eq("the UPDATE is seen at once", rs.getInt(1), 10);
                }
                long deadline = System.currentTimeMillis() + 10_000;
                int port = portOf(c);
                while (!REPLICAS.contains(port) && System.currentTimeMillis() < deadline) {
                    Thread.sleep(50);
                    port = portOf(c);
                }
                check("reads return to the replicas after the writes are replayed", REPLICAS.contains(port), port);
            }
        });

        section("transactions run on the primary", () -> {
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                List<Integer> ports = List.of(portOf(c), portOf(c));
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + T + " VALUES (?, 'tx')")) {
                    ins.setInt(1, 100);
                    ins.executeUpdate();
                }
                try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT v FROM " + T + " WHERE id = 100")) {
                    check("the transaction sees its own insert", rs.next() && "tx".equals(rs.getString(1)), "no row");
                }
                c.commit();
                check("every statement of the transaction ran on the primary", new HashSet<>(ports).equals(Set.of(PRIMARY)), ports);
                eq("the next transaction also runs on the primary", portOf(c), PRIMARY);
                try (Statement st = c.createStatement()) {
                    st.executeUpdate("INSERT INTO " + T + " VALUES (101, 'rolled back')");
                }
                c.rollback();
                c.setAutoCommit(true);
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT count(*) FROM " + T + " WHERE id IN (100, 101)")) {
                    rs.next();
                    eq("the committed row is there, the rolled-back one is not", rs.getInt(1), 1);
                }
            }
        });

        section("batch inserts", () -> {
            try (Connection c = connect()) {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + T + " VALUES (?, ?)")) {
                    for (int i = 0; i < 500; i++) {
                        ps.setInt(1, 1000 + i);
                        ps.setString(2, "batch " + i + " " + UNICODE);
                        ps.addBatch();
                    }
                    int[] counts = ps.executeBatch();
                    check("executeBatch of 500 inserts reports each", counts.length == 500
                        && Arrays.stream(counts).allMatch(n -> n == 1 || n == Statement.SUCCESS_NO_INFO), Arrays.toString(counts));
                }
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT count(*), min(v), bool_and(v LIKE 'batch %') FROM " + T + " WHERE id >= 1000 AND id < 1500")) {
                    rs.next();
                    eq("the batch is read back at once", rs.getInt(1), 500);
                    eq("with its UTF-8 text", rs.getString(2), "batch 0 " + UNICODE);
                }
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + T + " VALUES (?, ?)")) {
                    for (int id : new int[] {1600, 1000, 1601}) {
                        ps.setInt(1, id);
                        ps.setString(2, "dup batch");
                        ps.addBatch();
                    }
                    ps.executeBatch();
                    check("a batch with a duplicate key fails", false, "no error");
                } catch (BatchUpdateException e) {
                    eq("the batch's SQLState is 23505", e.getSQLState() != null ? e.getSQLState()
                        : e.getNextException() != null ? e.getNextException().getSQLState() : null, "23505");
                }
                c.rollback();
                c.setAutoCommit(true);
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT count(*) FROM " + T + " WHERE id IN (1600, 1601)")) {
                    rs.next();
                    eq("the failed batch left nothing", rs.getInt(1), 0);
                }
            }
        });

        section("errors pass through", () -> {
            try (Connection c = connect()) {
                try (Statement st = c.createStatement()) {
                    st.executeUpdate("INSERT INTO " + T + " VALUES (500, 'first')");
                }
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + T + " VALUES (?, 'again')")) {
                    ps.setInt(1, 500);
                    ps.executeUpdate();
                    check("a duplicate key fails", false, "no error");
                } catch (SQLException e) {
                    eq("unique violation SQLState", e.getSQLState(), "23505");
                    check("the message names the constraint", e.getMessage().contains(T + "_pkey"), e.getMessage());
                }
                eq("the connection is usable after the error", REPLICAS.contains(portOf(c)) || portOf(c) == PRIMARY, true);
                try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?")) {
                    ps.setInt(1, 0);
                    ps.executeQuery();
                    check("division by zero fails", false, "no error");
                } catch (SQLException e) {
                    eq("division by zero in a read: SQLState", e.getSQLState(), "22012");
                }
                try (Statement st = c.createStatement()) {
                    st.executeQuery("SELEC 1");
                    check("a syntax error fails", false, "no error");
                } catch (SQLException e) {
                    eq("a syntax error: SQLState", e.getSQLState(), "42601");
                }
                c.setAutoCommit(false);
                try (Statement st = c.createStatement()) {
                    st.executeUpdate("INSERT INTO " + T + " VALUES (501, 'in tx')");
                    st.executeUpdate("INSERT INTO " + T + " VALUES (500, 'dup in tx')");
                    check("a duplicate in a transaction fails", false, "no error");
                } catch (SQLException e) {
                    eq("inside a transaction: SQLState", e.getSQLState(), "23505");
                }
                try (Statement st = c.createStatement()) {
                    st.executeQuery("SELECT 1");
                    check("the aborted transaction refuses statements", false, "no error");
                } catch (SQLException e) {
                    eq("the aborted transaction refuses statements: SQLState", e.getSQLState(), "25P02");
                }
                c.rollback();
                c.setAutoCommit(true);
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT count(*) FROM " + T + " WHERE id = 501")) {
                    rs.next();
                    eq("the rolled-back insert is gone", rs.getInt(1), 0);
                }
            }
        });

        section("type round trips", () -> {
            try (Connection c = connect()) {
                BigDecimal big = new BigDecimal("12345678901234567890.123456789012345678901234567890");
                BigDecimal tiny = new BigDecimal("-0.000000000000000000000000000000000001");
                OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 23, 59, 59, 123_456_000, ZoneOffset.UTC);
                OffsetDateTime tsOffset = OffsetDateTime.of(1999, 12, 31, 22, 0, 0, 1_000, ZoneOffset.ofHoursMinutes(5, 30));
                String sql = "SELECT ?::int8, ?::int8, ?::int4, ?::int2, ?::numeric, ?::numeric, ?::text, ?::bytea, "
                    + "?::timestamptz, ?::timestamptz, ?::int4[], ?::text[], ?::jsonb, ?::int8, ?::text";
                try (PreparedStatement ps = c.prepareStatement(sql)) {
                    for (int round = 0; round < 3; round++) { // the named statement, reused
                        ps.setLong(1, Long.MAX_VALUE);
                        ps.setLong(2, Long.MIN_VALUE);
                        ps.setInt(3, Integer.MIN_VALUE);
                        ps.setShort(4, Short.MAX_VALUE);
                        ps.setBigDecimal(5, big);
                        ps.setBigDecimal(6, tiny);
                        ps.setString(7, UNICODE);
                        ps.setBytes(8, ALL_BYTES);
                        ps.setObject(9, ts);
                        ps.setObject(10, tsOffset);
                        ps.setArray(11, c.createArrayOf("int4", new Integer[] {1, -2, null, Integer.MAX_VALUE}));
                        ps.setArray(12, c.createArrayOf("text", new String[] {"a", "b c", "", null, "🐘", "quo\"te", "com,ma", "NULL"}));
                        ps.setString(13, "{\"ü\": \"🐘\", \"a\": [1, 2.5, null, true]}");
                        ps.setNull(14, Types.BIGINT);
                        ps.setNull(15, Types.VARCHAR);
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            String r = " (round " + round + ")";
                            eq("long max" + r, rs.getLong(1), Long.MAX_VALUE);
                            eq("long min" + r, rs.getLong(2), Long.MIN_VALUE);
                            eq("int min" + r, rs.getInt(3), Integer.MIN_VALUE);
                            eq("short max" + r, rs.getShort(4), Short.MAX_VALUE);
                            eq("BigDecimal high precision" + r, rs.getBigDecimal(5), big);
                            eq("BigDecimal tiny negative" + r, rs.getBigDecimal(6), tiny);
                            eq("String UTF-8" + r, rs.getString(7), UNICODE);
                            eq("byte[] of all 256 values" + r, rs.getBytes(8), ALL_BYTES);
                            OffsetDateTime got = rs.getObject(9, OffsetDateTime.class);
                            check("OffsetDateTime (UTC)" + r, got != null && got.isEqual(ts), got);
                            got = rs.getObject(10, OffsetDateTime.class);
                            check("OffsetDateTime (+05:30, microseconds)" + r, got != null && got.isEqual(tsOffset), got);
                            Array ints = rs.getArray(11);
                            eq("int4[]" + r, ints.getArray(), new Integer[] {1, -2, null, Integer.MAX_VALUE});
                            Array texts = rs.getArray(12);
                            eq("text[]" + r, texts.getArray(), new String[] {"a", "b c", "", null, "🐘", "quo\"te", "com,ma", "NULL"});
                            eq("jsonb (normalized by the server)" + r, rs.getString(13), "{\"a\": [1, 2.5, null, true], \"ü\": \"🐘\"}");
                            rs.getLong(14);
                            eq("NULL bigint" + r, rs.wasNull(), true);
                            eq("NULL text" + r, rs.getString(15), null);
                        }
                    }
                }
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), ''), 'hex'), "
                         + "9223372036854775807::int8, '1.000000000000000000000000000001'::numeric FROM generate_series(0, 255) g")) {
                    rs.next();
                    eq("bytea made by the server", rs.getBytes(1), ALL_BYTES);
                    eq("int8 made by the server", rs.getLong(2), Long.MAX_VALUE);
                    eq("numeric made by the server", rs.getBigDecimal(3), new BigDecimal("1.000000000000000000000000000001"));
                }
            }
        });

        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
