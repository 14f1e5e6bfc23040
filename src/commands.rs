//! The commands behind the binary's subcommands: each turns validated arguments into work
//! and reports failure as one `anyhow` error, which `main` prints on one line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use regmirror::cache::maintenance::{self, Prune};
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::cli::{CacheCommand, CertInitArgs, ClientConfigArgs, DataDirArg, ServeArgs};
use regmirror::client_config;
use regmirror::config::{self, Config, Tls};
use regmirror::server;
use tokio::net::TcpListener;

use crate::report;

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

pub fn cert_show(args: DataDirArg) -> anyhow::Result<()> {
    print!("{}", certs::describe(&cert_dir(args))?);
    Ok(())
}

pub fn cache(command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Stats(dir) => {
            let stats = maintenance::stats(&data_dir(dir))?;
            println!("blobs      {}", stats.blobs);
            println!("manifests  {}", stats.manifests);
            println!("bytes      {}", stats.bytes);
            println!("tags       {}", stats.tags);
        }
        CacheCommand::Ls(dir) => print!("{}", maintenance::list(&data_dir(dir))?),
        CacheCommand::Prune(args) => {
            let rule = Prune {
                max_bytes: args
                    .max_size
                    .as_deref()
                    .map(config::parse_size)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("invalid --max-size: {e}"))?,
                older_than: args
                    .older_than
                    .as_deref()
                    .map(config::parse_duration)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("invalid --older-than: {e}"))?,
            };
            anyhow::ensure!(
                rule.max_bytes.is_some() || rule.older_than.is_some(),
                "say what to prune: --max-size and/or --older-than"
            );
            let (files, bytes) = maintenance::prune(&data_dir(args.data_dir), &rule)?;
            println!("pruned {files} files, {bytes} bytes");
        }
        CacheCommand::Verify(dir) => {
            let bad = maintenance::verify(&data_dir(dir))?;
            for line in &bad {
                println!("{line}");
            }
            anyhow::ensure!(
                bad.is_empty(),
                "{} cached files failed verification and were quarantined",
                bad.len()
            );
            println!("all cached content matches its digest");
        }
    }
    Ok(())
}

pub fn client_config(args: ClientConfigArgs) -> anyhow::Result<()> {
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

pub fn serve(mut args: ServeArgs) -> ExitCode {
    // Under systemd, ConfigurationDirectory= names where the config file lives.
    if args.config.is_none() {
        let default = env("CONFIGURATION_DIRECTORY").map(|dir| PathBuf::from(dir).join("config.toml"));
        args.config = default.filter(|path| path.exists());
    }
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
