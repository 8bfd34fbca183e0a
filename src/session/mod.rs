//! One client's life: startup and authentication, then a loop that reads the client's messages,
//! routes each unit of work (a simple Query, or an extended batch up to Sync/Flush), lends it a
//! pooled server connection and relays the replies until the connection can go back to the pool.

pub mod cancel;
pub mod client;
mod copy;
mod dispatch;
mod extended;
mod flow;
mod functions;
mod local;
mod observe;
mod params;
mod relay;
mod replies;
mod reported;
pub mod slots;
pub mod startup;
mod state;
pub mod statements;
mod steer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::backend::{LoginPools, Pool, PooledConn};
use crate::config::{PoolMode, UserConfig};
use crate::consistency;
use crate::error::Error;
use crate::protocol::messages;
use crate::proxy::Proxy;
use crate::router::decision::{NodeFacts, Reason};
use crate::router::Route;
use client::Client;
use extended::{Batch, Unnamed};
use params::Params;
use relay::Relay;
use state::State;
use statements::Statement;

/// The server connection a client holds, and the replies still due on it.
struct Held {
    conn: PooledConn,
    route: Route,
    relay: Relay,
    /// The read just sent on this fresh connection, until the client sees any of its reply.
    retry: Option<(dispatch::Unit, dispatch::Traits)>,
    /// A write was sent on it since the session last became idle.
    wrote: bool,
}

/// Where a unit went, why, and the rule (or "hint") that steered it.
#[derive(Debug, Clone)]
struct LastRoute {
    route: Route,
    reason: Reason,
    by: Option<Arc<str>>,
}

/// One connected, authenticated client.
pub struct Session {
    proxy: Arc<Proxy>,
    /// The client's socket, what it sent and not processed yet, and what is queued for it
    /// (written before the session waits again).
    client: Client,
    /// ParameterStatus as the client was told it.
    reported: reported::Reported,
    /// Bytes for the server being gathered (kept for its capacity).
    to_server: BytesMut,
    /// Relay events being handled (kept for its capacity).
    events: Vec<relay::Event>,
    pools: LoginPools,
    held: Option<Held>,
    /// Transaction status, COPY, pending Sync, deferred BEGIN, pins.
    state: State,
    /// Session parameters as the client set them, and as they were at startup.
    params: Params,
    startup_params: Params,
    /// Parameters changed in the current transaction: read back from the server when it ends.
    touched: std::collections::BTreeSet<String>,
    statements: HashMap<String, Arc<Statement>>,
    unnamed: Option<Unnamed>,
    /// Set while the held connection holds the session's unnamed statement.
    unnamed_on_held: bool,
    batch: Batch,
    /// The last connection's relay, reused for the next one (its buffers stay allocated).
    spare_relay: Relay,
    /// This session's BackendKeyData, and the server connection a cancel would go to.
    cancel: cancel::Handle,
    /// Read-your-writes state.
    ryw: consistency::Session,
    /// The server sent a FATAL error, relayed to the client: the session ends.
    fatal: bool,
    /// Where the last unit went and why (`SHOW pgroute.last_route`).
    last_route: Option<LastRoute>,
    /// When the oldest unit still waiting for its ReadyForQuery was routed (for metrics).
    unit_started: Option<std::time::Instant>,
    /// Who the session is for routing rules, and the rules it can match.
    rules: steer::SessionRules,
    /// The router's buffer for node counters, kept across units.
    route_scratch: Vec<NodeFacts>,
    /// What the primary's catalog says about this database's functions.
    functions: Arc<crate::catalog::DatabaseFunctions>,
    /// DDL that changes functions went out since the session was last idle: answers about
    /// functions are dropped again at its next ReadyForQuery outside a transaction.
    functions_changed: bool,
    /// `[limits]` timeouts, and the query timeout's state.
    timeouts: flow::Timeouts,
}

/// Runs one client connection to its end.
pub async fn serve(proxy: Arc<Proxy>, stream: TcpStream, conn_id: u64) {
    let metrics = proxy.metrics.clone();
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut client = Client::new(stream);
    // "authentication_timeout": a client that has not logged in by then is disconnected.
    let deadline = tokio::time::Instant::now() + proxy.config().limits.startup_timeout;
    let Ok(hello) = tokio::time::timeout_at(deadline, startup::read_hello(&mut client)).await
    else {
        tracing::debug!(
            conn_id,
            "startup_timeout: no startup packet, connection closed"
        );
        return;
    };
    let result = match hello {
        Ok(startup::Hello::Cancel { pid, secret }) => {
            proxy.cancels.cancel(pid, secret).await;
            return;
        }
        Ok(startup::Hello::Invalid(why)) => {
            tracing::debug!(conn_id, why, "startup packet refused, connection closed");
            return;
        }
        Ok(startup::Hello::Startup { params, negotiate }) => {
            let span = tracing::debug_span!(
                "session",
                conn_id,
                user = params.get("user").map(String::as_str).unwrap_or(""),
                db = params.get("database").map(String::as_str).unwrap_or(""),
            );
            login(proxy, client, params, negotiate, peer, deadline)
                .instrument(span)
                .await
        }
        Err(e) => Err((e, Some(client))),
    };
    match result {
        Ok(()) => tracing::debug!(conn_id, "client disconnected"),
        Err((Error::ClientGone, _)) => tracing::debug!(conn_id, "client disconnected"),
        Err((e, client)) => {
            tracing::debug!(conn_id, error = %e, origin = ?e.origin(), "session ended");
            if let Some(mut client) = client {
                // Only the error: replies queued and not written yet are dropped.
                client.discard_queued();
                metrics.error_sent(&e);
                e.write_response(client.out());
                let _ = client.shutdown().await;
            }
        }
    }
}

type LoginResult = Result<(), (Error, Option<Client>)>;

async fn login(
    proxy: Arc<Proxy>,
    mut client: Client,
    startup_params: BTreeMap<String, String>,
    negotiate: Option<(i32, Vec<String>)>,
    peer: Option<std::net::IpAddr>,
    deadline: tokio::time::Instant,
) -> LoginResult {
    if let Some((minor, options)) = negotiate {
        if let Err(e) = negotiate_version(&mut client, minor, options).await {
            return Err((Error::Client(e), None));
        }
    }
    let user_name = startup_params.get("user").cloned().unwrap_or_default();
    let database = startup_params
        .get("database")
        .cloned()
        .unwrap_or_else(|| user_name.clone());
    let config = proxy.config();
    let Some(user) = config.user(&user_name).cloned() else {
        return Err((Error::UnknownRole(user_name), Some(client)));
    };
    let scram = proxy.scram_secret(&user);
    match authenticate_by(deadline, &mut client, &user, &scram).await {
        Ok(()) => {}
        Err(e @ Error::Client(_)) => return Err((e, None)),
        Err(e) => return Err((e, Some(client))),
    }
    let limits = &config.limits;
    let _slot = match proxy.slots.take(
        &user.name,
        &database,
        limits.max_connections_per_user,
        limits.max_connections_per_database,
    ) {
        Ok(slot) => slot,
        Err(e) => return Err((e.into(), Some(client))),
    };
    client.set_max_message(usize::try_from(limits.max_message_size.as_u64()).unwrap_or(usize::MAX));
    let pools = LoginPools::new(
        &proxy.pools,
        &proxy.cluster,
        &user.name,
        user.server_password(),
        &database,
    );
    let params = params::from_startup(&startup_params);
    let ryw = match startup_consistency(&config, &startup_params) {
        Ok(ryw) => ryw,
        Err(e) => return Err((e, Some(client))),
    };
    let functions = proxy.functions.database(&database);
    let mut session = Session::new(proxy, client, pools, params, ryw, functions);
    session.rules = steer::SessionRules::new(&user.name, &database, peer);
    session.timeouts = flow::Timeouts::new(limits);
    if let Err(e) = session.greet(&user, &startup_params).await {
        return Err((e, Some(session.client)));
    }
    match session.run().await {
        Ok(()) | Err(Error::ClientGone | Error::ServerClosed) => Ok(()),
        Err(e @ Error::Client(_)) => Err((e, None)),
        Err(e) => Err((e, Some(session.client))),
    }
}

/// [`startup::authenticate`] by `deadline` (`limits.startup_timeout`); a client that takes
/// longer gets an `Error::Client` (closed without a reply, as PostgreSQL does).
async fn authenticate_by(
    deadline: tokio::time::Instant,
    client: &mut Client,
    user: &UserConfig,
    scram: &startup::ScramSecret,
) -> Result<(), Error> {
    match tokio::time::timeout_at(deadline, startup::authenticate(client, user, scram)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Client(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "limits.startup_timeout",
        ))),
    }
}

/// The session's read-your-writes state, with the `pgroute.*` startup parameters applied.
fn startup_consistency(
    config: &crate::config::Config,
    startup_params: &BTreeMap<String, String>,
) -> Result<consistency::Session, Error> {
    let consistency = &config.consistency;
    let mut ryw = consistency::Session::new(consistency.read_your_writes, consistency.stick_for);
    for (name, value) in params::own_from_startup(startup_params) {
        ryw.set(&name, &params::literal(&value))
            .map_err(Error::StartupSetting)?;
    }
    Ok(ryw)
}

/// "NegotiateProtocolVersion … the newest minor protocol version supported by the server … and
/// a list of protocol options not recognized by the server." PostgreSQL itself sends its whole
/// newest version (PG_PROTOCOL_LATEST, 3.0 = 196608) in that field, and clients accept it:
/// pgroute answers as the server would.
async fn negotiate_version(
    client: &mut Client,
    minor: i32,
    options: Vec<String>,
) -> std::io::Result<()> {
    let newest = (3 << 16) | minor;
    let msg = pgwire::messages::startup::NegotiateProtocolVersion::new(newest, options);
    let _ = pgwire::messages::Message::encode(&msg, client.out());
    client.flush().await
}

impl Session {
    fn new(
        proxy: Arc<Proxy>,
        client: Client,
        pools: LoginPools,
        params: Params,
        ryw: consistency::Session,
        functions: Arc<crate::catalog::DatabaseFunctions>,
    ) -> Self {
        Session {
            state: State::new(proxy.config().pool.mode == PoolMode::Session),
            proxy,
            client,
            reported: reported::Reported::default(),
            to_server: BytesMut::with_capacity(4 * 1024),
            events: Vec::with_capacity(8),
            pools,
            held: None,
            startup_params: params.clone(),
            params,
            touched: Default::default(),
            statements: HashMap::new(),
            unnamed: None,
            unnamed_on_held: false,
            batch: Batch::default(),
            spare_relay: Relay::default(),
            cancel: cancel::Handle::default(),
            ryw,
            fatal: false,
            last_route: None,
            unit_started: None,
            rules: steer::SessionRules::default(),
            route_scratch: Vec::new(),
            functions,
            functions_changed: false,
            timeouts: flow::Timeouts::default(),
        }
    }

    /// AuthenticationOk, the server's ParameterStatus (as this client asked for them),
    /// BackendKeyData and ReadyForQuery.
    async fn greet(
        &mut self,
        user: &UserConfig,
        startup: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let server_params = self.server_parameters().await?;
        let out = self.client.out();
        messages::authentication(out, pgwire::messages::startup::Authentication::Ok);
        let mut told = Vec::new();
        let mut asked = Vec::new();
        for (name, value) in server_params.iter() {
            let given = startup.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
            let value = given.map(|(_, v)| v).unwrap_or(value);
            messages::parameter_status(out, name, value);
            told.push((name.as_str(), value.as_str()));
            if given.is_some() {
                asked.push((name.as_str(), value.as_str()));
            }
        }
        self.reported = reported::Reported::new(told.into_iter(), asked.into_iter());
        self.cancel = self.proxy.cancels.register();
        let (pid, secret) = self.cancel.key();
        let out = self.client.out();
        messages::backend_key_data(out, pid, secret);
        messages::ready_for_query(out, b'I');
        tracing::debug!(user = %user.name, "client authenticated");
        self.client.flush().await.map_err(Error::Client)
    }

    /// The ParameterStatus values a login reports: those cached by the pools of this user and
    /// database (the primary's first), so that a login waits for no server connection. Only
    /// the first login for a user and database borrows one, which also checks that the
    /// database exists and that pgroute can log in.
    async fn server_parameters(&mut self) -> Result<Arc<BTreeMap<String, String>>, Error> {
        let primary = self.proxy.cluster.primary();
        let mut order: Vec<Arc<Pool>> = Vec::new();
        for (id, pool) in self.pools.live() {
            if id == primary {
                order.insert(0, pool.clone());
            } else {
                order.push(pool.clone());
            }
        }
        if let Some(params) = order.iter().find_map(|p| p.server_params()) {
            return Ok(params);
        }
        let mut last = None;
        for pool in order {
            match pool.acquire().await {
                Ok(conn) => {
                    let params = Arc::new(conn.server_params.clone());
                    conn.release();
                    return Ok(params);
                }
                Err(e) => {
                    // A refused login fails on every node alike; a node's failure may not.
                    let e = Error::Login(e);
                    if !e.retry() {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::NoNode))
    }
}
