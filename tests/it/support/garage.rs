//! A one-node Garage (the S3 store regmirror's fleets share) for the bucket tests, in a
//! directory of its own on loopback ports, with one bucket and one key. The binary comes from
//! `REGMIRROR_GARAGE` (`.ci/run` installs it and sets it); the tests that need it are ignored
//! otherwise, and fail loudly when run without it. Dropping a `Garage` kills its server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regmirror::bucket::Bucket;
use regmirror::config::{BucketConfig, BucketCredentials};
use tempfile::TempDir;

pub const BUCKET: &str = "regmirror";
/// Garage's key ids are `GK` and 24 hex digits, its secrets 64 hex digits.
const KEY_ID: &str = "GK0123456789abcdef01234567";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const STARTUP: Duration = Duration::from_secs(30);

pub struct Garage {
    child: Child,
    dir: TempDir,
    s3: String,
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("garage dir");
        let [rpc, s3, admin] = [free_port(), free_port(), free_port()];
        write_config(dir.path(), rpc, s3, admin);
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("garage log");
        let child = Command::new(binary())
            .args(["-c", &config_path(dir.path())])
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start garage");
        let garage = Garage {
            child,
            dir,
            s3: format!("http://127.0.0.1:{s3}"),
        };
        garage.set_up();
        garage
    }

    /// Waits for the node to answer on its RPC port (`status` asks it there; `node id` only
    /// reads its key), gives it the whole layout, and makes the bucket and its key.
    fn set_up(&self) {
        let deadline = Instant::now() + STARTUP;
        while let Err(e) = self.try_garage(&["status"]) {
            assert!(Instant::now() < deadline, "garage did not start: {e}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let id = self.garage(&["node", "id", "-q"]);
        let id = id.split('@').next().unwrap_or_default().trim();
        self.garage(&["layout", "assign", "-z", "dc1", "-c", "1G", id]);
        self.garage(&["layout", "apply", "--version", "1"]);
        self.garage(&["bucket", "create", BUCKET]);
        self.garage(&["key", "import", "--yes", "-n", "regmirror", KEY_ID, SECRET]);
        self.garage(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
        ]);
    }

    pub fn config(&self) -> BucketConfig {
        BucketConfig {
            endpoint: self.s3.parse().expect("endpoint"),
            fallbacks: Vec::new(),
            name: BUCKET.to_owned(),
            region: "garage".to_owned(),
            virtual_host: false,
            credentials: BucketCredentials {
                access_key_id: KEY_ID.to_owned(),
                secret_access_key: SECRET.to_owned(),
            },
        }
    }

    /// A client of the bucket, to look at what the mirrors put there.
    pub fn client(&self) -> Bucket {
        Bucket::new(&self.config()).expect("bucket client")
    }

    fn garage(&self, args: &[&str]) -> String {
        self.try_garage(args)
            .unwrap_or_else(|e| panic!("garage {args:?}: {e}\n{}", self.log()))
    }

    fn try_garage(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(binary())
            .args(["-c", &config_path(self.dir.path())])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        match output.status.success() {
            true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    match std::env::var_os("REGMIRROR_GARAGE") {
        Some(path) => PathBuf::from(path),
        None => panic!("REGMIRROR_GARAGE must name a garage binary (cargo install garage --locked)"),
    }
}

fn config_path(dir: &Path) -> String {
    dir.join("garage.toml").display().to_string()
}

fn write_config(dir: &Path, rpc: u16, s3: u16, admin: u16) {
    let d = dir.display();
    let config = format!(
        r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{SECRET}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#
    );
    std::fs::write(dir.join("garage.toml"), config).expect("garage config");
}

/// A port free at the time of asking: Garage binds its own, from its config file.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}
