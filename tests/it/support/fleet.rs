//! Several mirrors on one site, each told of the others (`--fleet`): listeners are bound
//! first, so that every member's config can list every member's URL.

use std::path::PathBuf;

use regmirror::config::FleetConfig;
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::mirror::Builder;
use super::{FakeRegistry, Mirror};

pub const KEY: &str = "fleet-key-0123456789abcdef";

pub struct Fleet {
    /// `None` once a test has stopped that member.
    pub members: Vec<Option<Mirror>>,
    pub urls: Vec<String>,
    _key_dir: TempDir,
}

impl Fleet {
    /// `size` mirrors of `upstream`, each as `adjust` leaves its builder.
    pub async fn start(upstream: &FakeRegistry, size: usize, adjust: impl Fn(Builder) -> Builder) -> Fleet {
        let key_dir = tempfile::tempdir().expect("key dir");
        let key_file: PathBuf = key_dir.path().join("fleet.key");
        std::fs::write(&key_file, KEY).expect("write the key");
        let mut listeners = Vec::new();
        for _ in 0..size {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind member"));
        }
        let urls: Vec<String> = (listeners.iter())
            .map(|l| format!("http://{}", l.local_addr().expect("member address")))
            .collect();
        let members = listeners.into_iter().enumerate().map(|(me, listener)| {
            let fleet = FleetConfig {
                members: urls.iter().map(|u| u.parse().expect("member URL")).collect(),
                me,
                key: KEY.to_owned(),
                ca: None,
            };
            let builder = adjust(Mirror::builder(upstream)).configure(|c| c.fleet = Some(fleet));
            Some(builder.start_on(listener))
        });
        Fleet {
            members: members.collect(),
            urls,
            _key_dir: key_dir,
        }
    }

    pub fn member(&self, index: usize) -> &Mirror {
        self.members[index].as_ref().expect("member still running")
    }

    /// Stops one member and waits until it no longer accepts connections.
    pub async fn stop(&mut self, index: usize) {
        let member = self.members[index].take().expect("member still running");
        member.stop().await;
    }
}
