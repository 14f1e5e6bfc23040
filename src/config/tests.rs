//! The value parsers, the layering of flags over file over defaults, and the errors that stop
//! startup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::parse::{duration, size};
use super::*;
use crate::cli::{self, Cli, Command};

#[test]
fn durations() {
    assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
    assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert!(duration("5x").is_err());
    assert!(duration("s").is_err());
    assert!(duration("-1s").is_err());
    assert!(duration("+5").is_err());
    assert!(duration("").is_err());
}

#[test]
fn sizes() {
    assert_eq!(size("50GiB"), Ok(50 << 30));
    assert_eq!(size("10GB"), Ok(10_000_000_000));
    assert_eq!(size("1024"), Ok(1024));
    assert_eq!(size("512 MiB"), Ok(512 << 20));
    assert!(size("12 parsecs").is_err());
    assert!(size("99999999999999TiB").is_err());
}

/// Without a `B`, an SI prefix has always meant its binary multiple here.
#[test]
fn sizes_keep_their_meaning() {
    assert_eq!(size("1GiB"), Ok(1 << 30));
    assert_eq!(size("20GiB"), Ok(20 << 30));
    assert_eq!(size("100GiB"), Ok(100 << 30));
    assert_eq!(size("1T"), Ok(1 << 40));
    assert_eq!(size("10G"), Ok(10 << 30));
    assert_eq!(size("64k"), Ok(64 << 10));
    assert_eq!(size("3MB"), Ok(3_000_000));
    assert_eq!(size("7b"), Ok(7));
    assert!(size("").is_err());
    assert!(size("B").is_err());
}

fn serve(args: &[&str]) -> ServeOptions {
    let argv = ["regmirror", "serve"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("valid flags").command {
        Command::Serve(options) => *options,
        other => panic!("not serve: {other:?}"),
    }
}

/// The config that the file at `path` alone gives.
fn from_file(path: &Path) -> Result<Config, Error> {
    let options = ServeOptions {
        config: Some(path.to_owned()),
        ..Default::default()
    };
    Config::from_options(options, None, None)
}

fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

#[test]
fn flags_win_over_file() {
    let (_dir, path) =
        config_file("listen = \"127.0.0.1:7000\"\ntag_ttl = \"5m\"\nmax_stale = \"7d\"\ninsecure_http = true\n");
    let options = ServeOptions {
        config: Some(path),
        ..serve(&["--tag-ttl", "10s", "--max-cache-size", "2GiB"])
    };
    let config = Config::from_options(options, None, None).expect("valid");
    assert_eq!(config.listen, "127.0.0.1:7000".parse().expect("addr"));
    assert_eq!(config.tag_ttl, Duration::from_secs(10));
    assert_eq!(config.max_stale, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(config.max_cache_size, Some(2 << 30));
    assert!(matches!(config.tls, Tls::Off));
}

#[test]
fn manifest_memory_is_64_mib_unless_a_layer_sets_it() {
    let defaults = Config::from_options(serve(&["--insecure-http"]), None, None).expect("valid");
    assert_eq!(defaults.manifest_cache_size, 64 << 20);
    let (_dir, path) = config_file("manifest_cache_size = \"8MiB\"\ninsecure_http = true\n");
    assert_eq!(from_file(&path).expect("valid").manifest_cache_size, 8 << 20);
    let options = ServeOptions {
        config: Some(path),
        ..serve(&["--manifest-cache-size", "0"])
    };
    let flagged = Config::from_options(options, None, None).expect("valid");
    assert_eq!(flagged.manifest_cache_size, 0, "the flag wins, and 0 keeps none");
}

#[test]
fn the_upstream_ca_reaches_docker_hub_and_not_other_registries() {
    let (_dir, path) = config_file(
        "upstream = \"https://hub.lan\"\nupstream_ca = \"/etc/ca/hub.pem\"\ninsecure_http = true\n\n\
         [[registries]]\nname = \"ghcr.io\"\nurl = \"https://ghcr.io\"\n",
    );
    let config = from_file(&path).expect("valid");
    let all = config.all_registries();
    assert_eq!(all[0].ca, Some(PathBuf::from("/etc/ca/hub.pem")));
    assert_eq!(all[1].ca, None);
}

#[test]
fn the_file_takes_every_key_of_the_shipped_example() {
    let example = include_str!("../../systemd/regmirror.toml");
    let (_dir, path) = config_file(&format!("{example}\ninsecure_http = true\n"));
    let options = ServeOptions {
        config: Some(path),
        ..Default::default()
    };
    let config = Config::from_options(options, None, None).expect("valid");
    assert_eq!(config.max_cache_size, Some(100 << 30));
    assert_eq!(config.min_free_disk, 5 << 30);
    assert_eq!(config.upstream, default_upstream());
}

/// The one line `main` prints for a refused command line, if it is about a value.
fn refused(argv: &[&str]) -> Option<String> {
    let error = Cli::try_parse_from(argv).expect_err("invalid");
    let argv: Vec<String> = argv.iter().map(ToString::to_string).collect();
    cli::invalid_value(&error, &argv)
}

#[test]
fn bad_flag_values_name_the_flag() {
    assert_eq!(
        refused(&["regmirror", "serve", "--tag-ttl", "soon"]).as_deref(),
        Some("invalid --tag-ttl 'soon': expected number at 0")
    );
    assert_eq!(
        refused(&["regmirror", "serve", "--tag-ttl=soon"]).as_deref(),
        Some("invalid --tag-ttl 'soon': expected number at 0")
    );
    assert_eq!(
        refused(&["regmirror", "serve", "--upstream", "ftp://x"]).as_deref(),
        Some("invalid --upstream 'ftp://x': expected an http:// or https:// URL")
    );
    let line = refused(&["regmirror", "cache", "prune", "--max-size", "lots"]);
    assert!(line.is_some_and(|line| line.starts_with("invalid --max-size 'lots': ")));
    assert_eq!(
        refused(&["regmirror", "--log-format", "yaml", "serve"]).as_deref(),
        Some("invalid --log-format 'yaml': expected one of text, json")
    );
    assert_eq!(refused(&["regmirror", "serve", "--no-such-flag"]), None);
}

#[test]
fn bad_file_values_name_the_key() {
    let (_dir, path) = config_file("tag_ttl = \"soon\"\n");
    let options = ServeOptions {
        config: Some(path.clone()),
        ..Default::default()
    };
    let err = Config::from_options(options, None, None).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid config file {}: tag_ttl: invalid value 'soon': expected number at 0",
            path.display()
        )
    );
    let (_dir, path) = config_file("[[registries]]\nname = \"r.lan\"\nurl = \"https://r.lan/v2\"\n");
    let options = ServeOptions {
        config: Some(path),
        ..Default::default()
    };
    let err = Config::from_options(options, None, None).expect_err("invalid");
    assert!(err
        .to_string()
        .ends_with("registries[0].url: invalid value 'https://r.lan/v2': a path prefix is not supported"));
}

/// The transfer caps are whole numbers from 1 up: a TOML integer in the file, a flag's text.
#[test]
fn transfer_caps_are_counts_from_one_up() {
    let (_dir, path) = config_file("max_transfers = 8\nmax_transfers_per_address = \"2\"\n");
    let config = from_file(&path).expect("valid");
    assert_eq!((config.max_transfers, config.max_transfers_per_address), (8, 2));
    let (_dir, path) = config_file("max_transfers = 0\n");
    let err = from_file(&path).expect_err("zero").to_string();
    assert!(
        err.ends_with("max_transfers: invalid value '0': must be at least 1"),
        "{err}"
    );
    assert_eq!(
        refused(&["regmirror", "serve", "--max-transfers-per-address", "many"]).as_deref(),
        Some("invalid --max-transfers-per-address 'many': invalid digit found in string (expected a whole number from 1 up)")
    );
}

#[test]
fn syntax_errors_say_the_line_on_one_line() {
    let (_dir, path) = config_file("offline = true\n\nlisten = \"[::]:5000\n");
    let err = file::read(&path).expect_err("invalid");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("invalid config file {}: line 3: ", path.display())),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn unknown_file_keys_are_refused() {
    for text in [
        "tag-ttl = \"5m\"\n",
        "config = \"other.toml\"\n",
        "[access]\nbogus = 1\n",
    ] {
        let (_dir, path) = config_file(text);
        let options = ServeOptions {
            config: Some(path),
            ..Default::default()
        };
        let err = Config::from_options(options, None, None).expect_err(text);
        assert!(matches!(err, Error::Parse { .. }), "{text}: {err}");
    }
}

#[test]
fn tls_files_go_together() {
    let options = ServeOptions {
        tls_cert: Some("c.pem".into()),
        ..Default::default()
    };
    assert!(matches!(
        Config::from_options(options, None, None),
        Err(Error::TlsIncomplete)
    ));
}

#[test]
fn environment_credentials_win_over_the_file() {
    let (_dir, path) = config_file("[upstream_credentials]\nusername = \"file\"\npassword = \"f\"\n");
    let options = ServeOptions {
        config: Some(path.clone()),
        insecure_http: true,
        ..Default::default()
    };
    let config = Config::from_options(options, None, None).expect("valid");
    assert_eq!(config.credentials.map(|c| c.username).as_deref(), Some("file"));
    let options = ServeOptions {
        config: Some(path),
        insecure_http: true,
        ..Default::default()
    };
    let env = env_credentials(Some("env".into()), Some("e".into())).expect("both");
    let config = Config::from_options(options, env, None).expect("valid");
    assert_eq!(config.credentials.map(|c| c.username).as_deref(), Some("env"));
    assert!(matches!(
        env_credentials(Some("u".into()), None),
        Err(Error::CredentialsIncomplete)
    ));
}

#[test]
fn defaults_to_self_issued_certificates_in_the_state_directory() {
    let config = Config::from_options(ServeOptions::default(), None, Some("/var/lib/regmirror".into())).expect("valid");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/regmirror"));
    assert!(matches!(config.tls, Tls::SelfIssued { ref dir } if dir == Path::new("/var/lib/regmirror/certs")));
    assert_eq!(config.listen, "[::]:5000".parse().expect("addr"));
    assert_eq!(config.tag_ttl, Duration::from_secs(60));
    assert_eq!(config.fill_timeout, Duration::from_secs(300));
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.min_free_disk, 1 << 30);
}

#[test]
fn credentials_are_redacted() {
    let c = Credentials {
        username: "u".into(),
        password: "hunter2".into(),
    };
    assert!(!format!("{c:?}").contains("hunter2"));
    let (_dir, path) = config_file(
        "[upstream_credentials]\nusername = \"u\"\npassword = \"hunter2\"\n\n\
         [[registries]]\nname = \"r.lan\"\nurl = \"https://r.lan\"\nusername = \"u\"\npassword = \"hunter3\"\n",
    );
    let options = file::read(&path).expect("valid");
    let shown = format!("{options:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
}

fn serve_command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("a serve subcommand")
}

/// Each `[default: …]` the help states is what leaving the option out gives.
#[test]
fn stated_defaults_are_the_applied_ones() {
    let applied = format!("{:?}", Config::from_options(serve(&["--insecure-http"]), None, None));
    let mut checked = 0;
    for arg in serve_command().get_arguments() {
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let stated = help
            .split_once("[default: ")
            .and_then(|(_, rest)| rest.rsplit_once(']'));
        let (Some(long), Some((stated, _))) = (arg.get_long(), stated) else {
            continue;
        };
        // Paths: their defaults depend on the environment and on each other.
        if ["data-dir", "tls-cert"].contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        let argv = ["regmirror", "serve", "--insecure-http", &flag, stated];
        let Ok(Cli {
            command: Command::Serve(given),
            ..
        }) = Cli::try_parse_from(argv)
        else {
            continue; // prose such as "no cap"
        };
        let config = Config::from_options(*given, None, None);
        assert_eq!(format!("{config:?}"), applied, "{flag} {stated}");
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} stated defaults could be checked");
}

/// README's flag table names every flag of `serve` with its environment variable.
#[test]
fn the_readme_lists_every_serve_option() {
    let readme = include_str!("../../README.md");
    // "| `--tls-cert FILE --tls-key FILE` | `REGMIRROR_TLS_CERT`, … |": the flags, then the rest.
    let rows: Vec<(&str, &str)> = (readme.lines())
        .filter_map(|line| line.strip_prefix("| `--")?.split_once('|'))
        .collect();
    for arg in serve_command().get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let env = format!("`{}`", env.to_string_lossy());
        let names = |flags: &str| {
            flags
                .split(['`', ' '])
                .any(|word| word.trim_start_matches("--") == long)
        };
        let listed = (rows.iter()).any(|(flags, rest)| names(flags) && rest.contains(&env));
        assert!(listed, "README's flag table has no row for --{long} with {env}");
    }
}

#[test]
fn an_upstream_url_with_credentials_is_refused_without_showing_them() {
    let line = refused(&["regmirror", "serve", "--upstream", "https://me:s3cret@hub.lan"]).expect("refused");
    assert!(line.starts_with("invalid --upstream 'https://…@hub.lan'"), "{line}");
    assert!(line.contains("`username` and `password`"), "{line}");
    assert!(!line.contains("s3cret") && !line.contains("me:"), "{line}");
    let (_dir, path) =
        config_file("insecure_http = true\n[[registries]]\nname = \"ghcr.io\"\nurl = \"https://bot:t0ken@ghcr.io\"\n");
    let error = from_file(&path).expect_err("refused").to_string();
    assert!(error.contains("registries") && error.contains("username"), "{error}");
    assert!(!error.contains("t0ken"), "{error}");
}

#[test]
fn passwords_come_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hub, ghcr) = (dir.path().join("hub-token"), dir.path().join("ghcr-token"));
    std::fs::write(&hub, "dckr_pat_x\n").expect("write");
    std::fs::write(&ghcr, "ghp_y\r\n").expect("write");
    let text = format!(
        "insecure_http = true\n[upstream_credentials]\nusername = \"me\"\npassword_file = {hub:?}\n\
         [[registries]]\nname = \"ghcr.io\"\nurl = \"https://ghcr.io\"\nusername = \"bot\"\npassword_file = {ghcr:?}\n"
    );
    let (_config_dir, path) = config_file(&text);
    let config = from_file(&path).expect("valid");
    assert_eq!(config.credentials.expect("hub").password, "dckr_pat_x");
    assert_eq!(
        config.registries[0].credentials.as_ref().expect("ghcr").password,
        "ghp_y"
    );
    let both =
        "insecure_http = true\n[upstream_credentials]\nusername = \"me\"\npassword = \"p\"\npassword_file = \"f\"\n";
    let (_both_dir, path) = config_file(both);
    let error = from_file(&path).expect_err("refused").to_string();
    assert!(error.contains("exactly one of password and password_file"), "{error}");
}
