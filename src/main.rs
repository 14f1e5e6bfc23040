//! The `regmirror` binary: parse the command line, set up logging, run the chosen command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use regmirror::cli::{Cli, Command, ServeArgs};
use regmirror::config::{self, Config, Tls};
use regmirror::server;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let credentials = config::env_credentials(env("REGMIRROR_UPSTREAM_USERNAME"), env("REGMIRROR_UPSTREAM_PASSWORD"));
    let config = credentials
        .and_then(|credentials| Config::from_args(args, credentials, env("STATE_DIRECTORY").map(PathBuf::from)));
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("regmirror: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regmirror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        if matches!(config.tls, Tls::Off) {
            tracing::warn!("serving PLAIN HTTP (--insecure-http): clients need an insecure-registries entry and traffic is unencrypted");
        }
        server::run(listener, config, shutdown_signal()).await?;
        Ok(())
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
