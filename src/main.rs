//! The `regmirror` binary: parse the command line, set up logging, run the chosen command.

mod commands;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use regmirror::cli::{CertCommand, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    match cli.command {
        Command::Serve(args) => commands::serve(args),
        Command::Cert(CertCommand::Init(args)) => report(commands::cert_init(args)),
        Command::Cert(CertCommand::Show(args)) => report(commands::cert_show(args)),
        Command::Cert(CertCommand::Client(args)) => report(commands::cert_client(args)),
        Command::ClientConfig(args) => report(commands::client_config(args)),
        Command::Cache(command) => report(commands::cache(command)),
        Command::Prefetch(args) => report(commands::prefetch(args)),
        Command::Export(args) => report(commands::export(args)),
        Command::Import(args) => report(commands::import(args)),
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
