//! The `regmirror` binary: parse the command line, set up logging, run the chosen command.

mod commands;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use regmirror::cli::{self, CertCommand, Cli, Command, LogFormat};
use regmirror::log_sink::LogSink;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let (sink, _flush_at_exit) = LogSink::start();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(sink);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    match cli.command {
        Command::Serve(args) => commands::serve(*args),
        Command::Cert(CertCommand::Init(args)) => report(commands::cert_init(args)),
        Command::Cert(CertCommand::Show(args)) => report(commands::cert_show(args)),
        Command::Cert(CertCommand::Client(args)) => report(commands::cert_client(args)),
        Command::ClientConfig(args) => report(commands::client_config(args)),
        Command::Cache(command) => report(commands::cache(command)),
        Command::Prefetch(args) => report(commands::prefetch(*args)),
        Command::Export(args) => report(commands::export(args)),
        Command::Import(args) => report(commands::import(args)),
        Command::Gc(args) => report(commands::gc(args)),
    }
}

/// A refused value stops startup with one line naming the flag or variable and exit code 2, as
/// a bad config-file value does; clap explains other mistakes (and prints help) itself.
fn usage_error(error: clap::Error) -> ExitCode {
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    match cli::invalid_value(&error, &argv) {
        Some(line) => {
            eprintln!("regmirror: {line}");
            ExitCode::from(2)
        }
        None => error.exit(),
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
