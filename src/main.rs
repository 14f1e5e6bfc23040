//! The `regmirror` binary: parse the command line, set up logging, run the chosen command.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::cli::{CertCommand, CertInitArgs, Cli, ClientConfigArgs, Command, DataDirArg, ServeArgs};
use regmirror::client_config;
use regmirror::config::{self, Config, Tls};
use regmirror::server;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Cert(CertCommand::Init(args)) => report(cert_init(args)),
        Command::Cert(CertCommand::Show(args)) => report(cert_show(args)),
        Command::ClientConfig(args) => report(client_config(args)),
    }
}

/// One line on stderr and a non-zero exit for any failure of a one-shot command.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regmirror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cert_dir(arg: DataDirArg) -> CertDir {
    CertDir::new(config::data_dir(arg.data_dir, env("STATE_DIRECTORY").map(PathBuf::from)).join("certs"))
}

fn cert_init(args: CertInitArgs) -> anyhow::Result<()> {
    let dir = cert_dir(args.data_dir);
    let report = certs::ensure(&dir, &Names::local(&args.hostnames, &args.ips), NamePolicy::Exact)?;
    println!("CA: {:?} ({})", report.ca, dir.ca_cert().display());
    println!(
        "server certificate: {:?} ({})",
        report.server,
        dir.server_cert().display()
    );
    print!("{}", certs::describe(&dir)?);
    Ok(())
}

fn cert_show(args: DataDirArg) -> anyhow::Result<()> {
    print!("{}", certs::describe(&cert_dir(args))?);
    Ok(())
}

fn client_config(args: ClientConfigArgs) -> anyhow::Result<()> {
    let dir = cert_dir(args.data_dir);
    let mirror = args.mirror.unwrap_or_else(|| {
        format!(
            "{}:5000",
            certs::machine_hostname().unwrap_or_else(|| "localhost".into())
        )
    });
    let fingerprint = certs::ca_pem_and_fingerprint(&dir).ok().map(|(_, fp)| fp);
    print!(
        "{}",
        client_config::render(args.client, &mirror, &dir.ca_cert(), fingerprint.as_deref())
    );
    Ok(())
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
    report(run(config))
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
