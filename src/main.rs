//! The `pgroute` command line: run the proxy from a config file, or `pgroute demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use pgroute::proxy::Proxy;
use pgroute::server;
use pgroute::{config, testbed};

/// PostgreSQL read/write routing proxy: writes to the primary, reads to lag-free replicas.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Every key can be overridden with PGROUTE_<SECTION>__<KEY>.
    #[arg(
        long,
        short,
        env = "PGROUTE_CONFIG",
        default_value = "config/pgroute.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a throwaway local cluster (primary + 2 streaming replicas) and pgroute in front.
    Demo {
        /// Where the proxy listens.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
        /// Number of streaming replicas.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
    },
    /// Load and validate the config file, print it, and exit.
    CheckConfig,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGROUTE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run_command(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, each cause once: "loading x.toml: cannot load configuration: … for
            // key `lag.max_bytes`" (the Debug form would repeat the chain and add a backtrace).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match cli.command {
        None => {
            let cfg = config::load(Some(&cli.config))
                .with_context(|| format!("loading {}", cli.config.display()))?;
            rt.block_on(run(cfg, None, Some(cli.config)))
        }
        Some(Command::CheckConfig) => {
            let cfg = config::load(Some(&cli.config))
                .with_context(|| format!("loading {}", cli.config.display()))?;
            println!("{cfg:#?}");
            Ok(())
        }
        Some(Command::Demo { listen, replicas }) => demo(&rt, &listen, replicas),
    }
}

/// Runs the proxy until Ctrl-C or SIGTERM. `ready` is printed to stdout once it listens. With
/// a config file, SIGHUP reloads it.
async fn run(
    cfg: config::Config,
    ready: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let listener = server::bind(&cfg)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let admin = pgroute::admin::bind(&cfg).await.with_context(|| {
        let addr = cfg.admin.listen.as_deref().unwrap_or_default();
        format!("listening on admin.listen {addr}")
    })?;
    let proxy = Proxy::new(cfg);
    if let Some(file) = file {
        tokio::spawn(reload_on_sighup(proxy.clone(), file));
    }
    let shutdown = CancellationToken::new();
    if let Some(admin) = admin {
        tokio::spawn(pgroute::admin::serve(
            proxy.clone(),
            admin,
            shutdown.clone(),
        ));
    }
    let serving = tokio::spawn(server::serve(proxy, listener, shutdown.clone()));
    if let Some(line) = ready {
        println!("{line}");
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    // Sessions get a moment to finish; the process ends regardless.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), serving).await;
    Ok(())
}

/// SIGHUP: reads the file (and the environment overrides) again, validates all of it and
/// installs it; a bad file is logged and the running configuration kept.
async fn reload_on_sighup(proxy: std::sync::Arc<Proxy>, file: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload needs a restart");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!(file = %file.display(), "SIGHUP: reloading the configuration");
            let result = match config::load(Some(&file)) {
                Ok(cfg) => proxy.reload(cfg),
                Err(e) => {
                    proxy.metrics.reload(false);
                    Err(e.into())
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "reload rejected: the running configuration stays");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (proxy, file);
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn demo(rt: &tokio::runtime::Runtime, listen: &str, replicas: usize) -> anyhow::Result<()> {
    let opts = testbed::ClusterOptions {
        replicas,
        ..Default::default()
    };
    eprintln!("starting a local primary and {replicas} streaming replicas …");
    let mut cluster = testbed::Cluster::start(opts).context("starting the demo cluster")?;
    let ports = cluster.node_ports();
    let toml = pgroute::demo::config_toml(&cluster, listen, "app", "app-secret", "");
    // Written to a file and loaded like any config, so PGROUTE_* variables override it too.
    let path = std::env::temp_dir().join(format!("pgroute-demo-{}.toml", std::process::id()));
    std::fs::write(&path, &toml).context("writing the demo config")?;
    let cfg = config::load(Some(&path)).context("demo config");
    let _ = std::fs::remove_file(&path);
    let cfg = cfg?;
    let replicas_list = ports[1..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let ready = format!(
        "pgroute demo ready: proxy={listen} primary=127.0.0.1:{} replicas={replicas_list} user=app password=app-secret\n\
         connect with: psql \"postgres://app:app-secret@{listen}/postgres\"\n\
         (Ctrl-C stops pgroute and removes the cluster)",
        ports[0]
    );
    let result = rt.block_on(run(cfg, Some(ready), None));
    cluster.shutdown();
    result
}
