//! The commands behind the binary's subcommands: each turns validated arguments into work
//! and reports failure as one `anyhow` error, which `main` prints on one line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use regmirror::bucket::Bucket;
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::cli::{CertClientArgs, CertInitArgs, ClientConfigArgs, DataDirArg, GcArgs};
use regmirror::client_config;
use regmirror::config::{self, Config, ServeOptions, Tls};
use regmirror::hosted::{bucket_gc, gc};
use regmirror::server;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::report;

mod airgap;
mod cache;

pub use airgap::{export, import, prefetch};
pub use cache::cache;

fn data_dir(arg: DataDirArg) -> PathBuf {
    config::data_dir(arg.data_dir, env("STATE_DIRECTORY").map(PathBuf::from))
}

fn cert_dir(arg: DataDirArg) -> CertDir {
    CertDir::new(data_dir(arg).join("certs"))
}

pub fn cert_init(args: CertInitArgs) -> anyhow::Result<()> {
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

pub fn cert_client(args: CertClientArgs) -> anyhow::Result<()> {
    let (cert, key) = certs::issue_client(&cert_dir(args.data_dir), &args.name)?;
    println!("client certificate: {}", cert.display());
    println!("client key:         {}", key.display());
    println!(
        "dockerd and podman: copy both into /etc/docker/certs.d/HOST:PORT/ (or /etc/containers/certs.d/HOST:PORT/)"
    );
    println!("                    as client.cert and client.key");
    println!(
        "containerd:         hosts.toml: client = [[\"{}\", \"{}\"]]",
        cert.display(),
        key.display()
    );
    Ok(())
}

pub fn cert_show(args: DataDirArg) -> anyhow::Result<()> {
    print!("{}", certs::describe(&cert_dir(args))?);
    Ok(())
}

/// A runtime on this thread, for the commands that wait on one thing at a time.
fn one_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    runtime.context("cannot start the async runtime")
}

/// Collects hosted content no tag reaches, beside a running server, and says what went.
pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    let dir = data_dir(args.data_dir);
    let bucket = args.bucket.config()?.map(|c| Bucket::new(&c)).transpose()?;
    let runtime = one_thread()?;
    let report = runtime
        .block_on(gc::collect(&dir, args.grace, args.upload_max_age))
        .with_context(|| format!("collecting {}", dir.display()))?;
    println!("freed {} files, {} bytes", report.files, report.bytes);
    println!("unlinked {} from hosted repositories", report.unlinked);
    println!(
        "left {} to the cache (mirrored repositories hold them)",
        report.unpinned
    );
    println!("removed {} abandoned uploads", report.uploads);
    if let Some(bucket) = bucket {
        let report = runtime
            .block_on(bucket_gc::collect(&bucket, args.grace))
            .context("collecting the bucket's hosted repositories")?;
        println!("bucket: freed {} objects, {} bytes", report.objects, report.bytes);
        println!("bucket: unlinked {} from hosted repositories", report.unlinked);
    }
    Ok(())
}

pub fn client_config(args: ClientConfigArgs) -> anyhow::Result<()> {
    let dir = cert_dir(args.data_dir);
    let mirror = args.mirror.map(|m| m.to_string()).unwrap_or_else(|| {
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

pub fn serve(mut args: ServeOptions) -> ExitCode {
    // Under systemd, ConfigurationDirectory= names where the config file lives.
    if args.config.is_none() {
        let default = env("CONFIGURATION_DIRECTORY").map(|dir| PathBuf::from(dir).join("config.toml"));
        args.config = default.filter(|path| path.exists());
    }
    let credentials = config::env_credentials(env("REGMIRROR_UPSTREAM_USERNAME"), env("REGMIRROR_UPSTREAM_PASSWORD"));
    let config = credentials
        .and_then(|credentials| Config::from_options(args, credentials, env("STATE_DIRECTORY").map(PathBuf::from)));
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
        server::run_with_reload(listener, config, shutdown_signal(), reload_signals()?).await?;
        Ok(())
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// SIGHUP asks for the TLS certificate and key to be read again.
fn reload_signals() -> anyhow::Result<mpsc::Receiver<()>> {
    let mut hangups = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // A reload already queued covers this one too.
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

async fn shutdown_signal() {
    let term = signal(SignalKind::terminate());
    let Ok(mut term) = term else {
        return tokio::signal::ctrl_c().await.unwrap_or(());
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
