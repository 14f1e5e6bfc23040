//! The commands behind the binary's subcommands: each turns validated arguments into work
//! and reports failure as one `anyhow` error, which `main` prints on one line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use regmirror::airgap::export::{self, Selection};
use regmirror::airgap::{import, prefetch, share};
use regmirror::bucket::Bucket;
use regmirror::cache::maintenance::{self, Prune};
use regmirror::cache::store::Store;
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::cli::{
    CacheCommand, CertClientArgs, CertInitArgs, ClientConfigArgs, DataDirArg, ExportArgs, GcArgs, ImportArgs,
    PrefetchArgs,
};
use regmirror::client_config;
use regmirror::config::{self, BucketConfig, Config, ServeOptions, Tls};
use regmirror::digest::Digest;
use regmirror::hosted::gc;
use regmirror::image::{Platform, Platforms};
use regmirror::mirror::Mirror;
use regmirror::reference::ImageRef;
use regmirror::server;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

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

/// Collects hosted content no tag reaches, beside a running server, and says what went.
pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    let dir = data_dir(args.data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
            println!("hosted     {} files, {} bytes", stats.hosted_files, stats.hosted_bytes);
        }
        CacheCommand::Ls(dir) => print!("{}", maintenance::list(&data_dir(dir))?),
        CacheCommand::Prune(args) => {
            let rule = Prune {
                max_bytes: args.max_size,
                older_than: args.older_than,
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

pub fn prefetch(args: PrefetchArgs) -> anyhow::Result<()> {
    let mut images = parse_images(&args.images)?;
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        images.extend(prefetch::parse_list(&text).with_context(|| file.display().to_string())?);
    }
    anyhow::ensure!(!images.is_empty(), "name the images to prefetch (IMAGE... or -f FILE)");
    let data_dir = data_dir(args.data_dir);
    // A data directory not made yet has hosted nothing.
    let hosted = Store::at(&data_dir)
        .and_then(|s| s.hosted_namespaces())
        .unwrap_or_default();
    prefetch::check_registries(&images, &hosted)?;
    let platforms = if args.all_platforms {
        Platforms::All
    } else if args.platform.is_empty() {
        Platforms::Only(vec![Platform::host()])
    } else {
        Platforms::Only(args.platform.iter().map(|p| p.parse()).collect::<Result<_, _>>()?)
    };
    let upstream = args.upstream.unwrap_or_else(config::default_upstream);
    let mut config = Config::new(upstream, data_dir);
    config.upstream_ca = args.upstream_ca;
    config.credentials =
        config::env_credentials(env("REGMIRROR_UPSTREAM_USERNAME"), env("REGMIRROR_UPSTREAM_PASSWORD"))?;
    // A prefetch asks the upstream what each tag points at now, however recently it was cached.
    config.tag_ttl = Duration::ZERO;
    config.bucket = args.bucket.config()?;
    let request = prefetch::Request {
        images,
        platforms,
        jobs: args.jobs,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(async {
        let mirror = Mirror::new(&config).context("cannot open the cache in the data directory")?;
        let mirror = Arc::new(mirror);
        let outcomes = prefetch::run(mirror.clone(), request).await;
        mirror.settle().await;
        anyhow::Ok(outcomes)
    })?;
    print!("{}", prefetch::table(&outcomes));
    all_fetched(&outcomes)
}

fn all_fetched(outcomes: &[prefetch::Outcome]) -> anyhow::Result<()> {
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.image)))
        .collect();
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} images failed (run again to resume):\n  {}",
        failures.len(),
        outcomes.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// Reads the images, every platform of them the bucket holds, from the bucket into the data
/// directory, asking no upstream: `prefetch` through an offline mirror on the bucket.
fn read_from_bucket(dir: &Path, bucket: BucketConfig, images: &[ImageRef]) -> anyhow::Result<()> {
    prefetch::check_registries(images, &[])?;
    let mut config = Config::new(config::default_upstream(), dir.to_owned());
    config.offline = true;
    config.bucket = Some(bucket);
    let request = prefetch::Request {
        images: images.to_vec(),
        platforms: Platforms::All,
        jobs: 4,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(async {
        let mirror = Mirror::new(&config).context("cannot open the cache in the data directory")?;
        anyhow::Ok(prefetch::run(Arc::new(mirror), request).await)
    })?;
    all_fetched(&outcomes).context("reading the images from the bucket")
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let selection = if args.all {
        Selection::All
    } else {
        Selection::Images(parse_images(&args.images)?)
    };
    let dir = data_dir(args.data_dir);
    if let Some(bucket) = args.bucket.config()? {
        let Selection::Images(images) = &selection else {
            anyhow::bail!("--bucket reads the images named from the bucket: name them instead of --all");
        };
        read_from_bucket(&dir, bucket, images)?;
    }
    let request = export::Request {
        selection,
        since: args.since,
        output: args.output,
    };
    let summary = export::export(&dir, &request)?;
    for (image, digest) in &summary.images {
        println!("{image}  {digest}");
    }
    let left_out = match summary.skipped {
        0 => String::new(),
        n => format!(", {n} left out as the earlier bundle has them"),
    };
    println!(
        "wrote {}: {} images, {} blobs of {} bytes{left_out}",
        request.output.display(),
        summary.images.len(),
        summary.blobs,
        summary.bytes,
    );
    Ok(())
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bundle = args.bundle.display().to_string();
    let bucket = args.bucket.config()?;
    let dir = data_dir(args.data_dir);
    let summary = runtime
        .block_on(import::import_hosting(
            &dir,
            &args.bundle,
            args.hosted_namespace.as_ref(),
        ))
        .map_err(|e| match e {
            import::Error::Cache(_) => anyhow::Error::new(e).context(format!("importing {bundle}")),
            e => anyhow::Error::new(e).context(format!("{bundle} refused, nothing added")),
        })?;
    for (image, digest) in &summary.images {
        println!("{image}  {digest}");
    }
    for name in &summary.unnamed {
        println!("(no tag) {name}");
    }
    println!(
        "imported {bundle}: {} added ({} bytes), {} already cached",
        summary.added, summary.bytes, summary.present
    );
    match bucket {
        Some(bucket) => share_imported(&runtime, &dir, &bucket, &summary.images),
        None => Ok(()),
    }
}

/// Puts what an import added in the bucket; hosted repositories stay in the data directory.
fn share_imported(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    bucket: &BucketConfig,
    images: &[(ImageRef, Digest)],
) -> anyhow::Result<()> {
    let store = Store::at(dir).context("cannot open the data directory")?;
    let hosted = store.hosted_namespaces().unwrap_or_default();
    let mirrored: Vec<_> = (images.iter())
        .filter(|(image, _)| !hosted.contains(&image.registry))
        .cloned()
        .collect();
    let bucket = Bucket::new(bucket)?;
    let shared = runtime
        .block_on(share::share(&store, &bucket, &mirrored))
        .context("putting the imported images in the bucket (run the import again to resume)")?;
    println!(
        "put {} images in the bucket: {} uploaded ({} bytes), {} blobs already there",
        mirrored.len(),
        shared.uploaded,
        shared.bytes,
        shared.present
    );
    Ok(())
}

fn parse_images(images: &[String]) -> anyhow::Result<Vec<ImageRef>> {
    let parse = |image: &String| image.parse().with_context(|| format!("invalid image '{image}'"));
    images.iter().map(parse).collect()
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
