//! The configuration as the real binary takes it, from its command line, its environment and
//! its config file (README, "Configuration"): a bad value stops startup with exit code 2 and one
//! line naming the option and the value, wherever it was given; a flag wins over an environment
//! variable, which wins over the config file; and a switch's variable takes `1` as well as
//! `true`.

use std::path::Path;
use std::time::Duration;

use crate::support::process::{Builder, MirrorProcess};
use crate::support::FakeRegistry;

/// Bound on the process starting or exiting; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

/// One way of configuring the mirror: flags, environment variables, config-file text.
#[derive(Debug)]
struct Given<'a> {
    flags: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    file: Option<&'a str>,
}

const NOTHING: Given<'static> = Given {
    flags: &[],
    env: &[],
    file: None,
};

/// The mirror configured as `given` (the file written into `dir` and named by `--config`),
/// over a data directory in `dir`.
fn configured(fake: &FakeRegistry, dir: &Path, given: &Given) -> Builder {
    let mut builder = MirrorProcess::builder(fake, &dir.join("data")).args(given.flags.iter().copied());
    for (name, value) in given.env {
        builder = builder.env(name, value);
    }
    if let Some(text) = given.file {
        let path = dir.join("regmirror.toml");
        std::fs::write(&path, text).expect("write the config file");
        builder = builder.args([std::ffi::OsStr::new("--config"), path.as_os_str()]);
    }
    builder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_stops_startup_with_one_line_naming_it_and_exit_code_2() {
    let fake = FakeRegistry::start().await;
    let flags = |flags| Given { flags, ..NOTHING };
    let env = |env| Given { env, ..NOTHING };
    let file = |text| Given {
        file: Some(text),
        ..NOTHING
    };
    // (how it is given, what the one line must name)
    let cases: [(Given, &[&str]); 9] = [
        (flags(&["--tag-ttl", "soon"]), &["--tag-ttl", "'soon'"]),
        (flags(&["--max-cache-size=lots"]), &["--max-cache-size", "'lots'"]),
        (
            flags(&["--log-format", "yaml"]),
            &["--log-format", "'yaml'", "text, json"],
        ),
        (
            env(&[("REGMIRROR_MAX_STALE", "forever")]),
            &["REGMIRROR_MAX_STALE", "'forever'"],
        ),
        (
            env(&[("REGMIRROR_ADMIN_LISTEN", "nowhere")]),
            &["REGMIRROR_ADMIN_LISTEN", "'nowhere'"],
        ),
        (
            env(&[("REGMIRROR_OFFLINE", "maybe")]),
            &["REGMIRROR_OFFLINE", "'maybe'"],
        ),
        (
            file("shutdown_grace = \"a while\"\n"),
            &["regmirror.toml", "shutdown_grace", "'a while'"],
        ),
        (
            file("offline = \"maybe\"\n"),
            &["regmirror.toml", "offline", "\"maybe\""],
        ),
        (
            file("[[registries]]\nname = \"r.lan\"\nurl = \"ftp://r.lan\"\n"),
            &["regmirror.toml", "registries[0].url", "'ftp://r.lan'"],
        ),
    ];
    for (given, named) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = configured(&fake, dir.path(), &given).launch();
        let status = process.wait_exit(WAIT).await;
        let stderr = process.log();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{named:?}: {status:?}\n{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{named:?}: one line:\n{stderr}");
        assert!(stderr.starts_with("regmirror: invalid "), "{stderr}");
        for part in named {
            assert!(stderr.contains(part), "{part:?} not named in: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_wins_over_the_environment_which_wins_over_the_file() {
    let fake = FakeRegistry::start().await;
    // The admin listener's address, as bound, tells which layer's value was taken; port 0
    // keeps the three addresses free.
    let (flag, var, file) = ("127.0.0.2", "127.0.0.3", "127.0.0.4");
    let flags = ["--admin-listen", "127.0.0.2:0"];
    let env = [("REGMIRROR_ADMIN_LISTEN", "127.0.0.3:0")];
    let text = "admin_listen = \"127.0.0.4:0\"\n";
    let given = |flags, env, file| Given { flags, env, file };
    // What is set where → the address that must win.
    let cases: [(Given, &str); 6] = [
        (given(&[], &[], Some(text)), file),
        (given(&[], &env, None), var),
        (given(&[], &env, Some(text)), var),
        (given(&flags, &[], Some(text)), flag),
        (given(&flags, &env, None), flag),
        (given(&flags, &env, Some(text)), flag),
    ];
    for (given, winner) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let mirror = configured(&fake, dir.path(), &given).spawn().await;
        let bound = mirror.admin_addr().ip().to_string();
        assert_eq!(bound, winner, "{given:?}");
    }

    // A bad value where a higher layer gives a good one is never read.
    let dir = tempfile::tempdir().expect("temp dir");
    let given = Given {
        flags: &flags,
        env: &[("REGMIRROR_ADMIN_LISTEN", "nowhere")],
        file: None,
    };
    let mirror = configured(&fake, dir.path(), &given).spawn().await;
    assert_eq!(mirror.admin_addr().ip().to_string(), flag);
}

/// README: `serve --offline` is also `REGMIRROR_OFFLINE=1`. A switch's variable takes the
/// usual spellings of on and off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_variable_takes_1_yes_and_on() {
    let fake = FakeRegistry::start().await;
    const OFFLINE: &str = "offline: no upstream is contacted";
    for (value, on) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("off", false),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = Given {
            env: &[("REGMIRROR_OFFLINE", value)],
            ..NOTHING
        };
        let mirror = configured(&fake, dir.path(), &given).spawn().await;
        // The notice is logged before the ready line, which `spawn` has waited for.
        assert_eq!(
            mirror.log().contains(OFFLINE),
            on,
            "REGMIRROR_OFFLINE={value}:\n{}",
            mirror.log()
        );
    }
}

/// systemd's `LoadCredential=` puts secrets in `$CREDENTIALS_DIRECTORY`; a relative
/// `password_file` is looked up there, and a missing one stops startup naming where it looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_password_file_is_read_from_the_credentials_directory() {
    let fake = FakeRegistry::start().await;
    let creds = tempfile::tempdir().expect("temp dir");
    let file = "[[registries]]\nname = \"r.lan\"\nurl = \"http://127.0.0.1:9\"\nusername = \"bot\"\n\
                password_file = \"r-token\"\n";
    let creds_dir = creds.path().to_str().expect("utf-8 path");
    let given = Given {
        env: &[("CREDENTIALS_DIRECTORY", creds_dir)],
        file: Some(file),
        ..NOTHING
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut process = configured(&fake, dir.path(), &given).launch();
    let status = process.wait_exit(WAIT).await;
    let stderr = process.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{creds_dir}/r-token")),
        "names where it looked: {stderr}"
    );

    std::fs::write(creds.path().join("r-token"), "s3cret\n").expect("write");
    let dir = tempfile::tempdir().expect("temp dir");
    let mirror = configured(&fake, dir.path(), &given).spawn().await;
    assert!(!mirror.log().contains("s3cret"), "the password is never logged");
}

/// A fleet that does not fit together stops startup with one line saying what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_does_not_fit_together_stops_startup_with_one_line() {
    let fake = FakeRegistry::start().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("fleet.key");
    std::fs::write(&key, "0123456789abcdef0123\n").expect("write the key");
    let key = key.to_str().expect("utf-8 path");
    let members = "https://a.lan:5000,https://b.lan:5000";
    let cases: [(&[&str], &str); 4] = [
        (&["--fleet", members, "--fleet-key-file", key], "--fleet-self"),
        (
            &[
                "--fleet",
                members,
                "--fleet-self",
                "https://c.lan:5000",
                "--fleet-key-file",
                key,
            ],
            "is not in --fleet",
        ),
        (
            &["--fleet", members, "--fleet-self", "https://a.lan:5000"],
            "--fleet-key-file",
        ),
        (&["--fleet", "ftp://a.lan", "--fleet-self", "ftp://a.lan"], "--fleet"),
    ];
    for (flags, named) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = Given { flags, ..NOTHING };
        let mut process = configured(&fake, dir.path(), &given).launch();
        let status = process.wait_exit(WAIT).await;
        let stderr = process.log();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{flags:?}: {status:?}\n{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: one line:\n{stderr}");
        assert!(stderr.contains(named), "{named:?} not named in: {stderr}");
    }
}
