//! Unit tests for the access policy.

use super::*;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn policy(text: &str, htpasswd: Option<&Path>) -> Access {
    let mut config: AccessConfig = toml::from_str(text).expect("config");
    config.htpasswd = htpasswd.map(Path::to_owned);
    Access::new(&config).expect("valid").expect("on")
}

fn repo(registry: &str, name: &str) -> (Registry, RepoName) {
    let registry: Registry = registry.parse().expect("registry");
    let repo = RepoName::on(&registry, name).expect("repo");
    (registry, repo)
}

fn htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let alice = bcrypt::hash("wonderland", 4).expect("hash");
    let bob = bcrypt::hash("builder", 4).expect("hash");
    std::fs::write(&path, format!("# users\nalice:{alice}\nbob:{bob}\n")).expect("write");
    path
}

#[test]
fn globs() {
    assert!(matches("docker.io/library/*", "docker.io/library/alpine"));
    assert!(matches("*", "ghcr.io/a/b"));
    assert!(matches("ghcr.io/*/tool", "ghcr.io/org/tool"));
    assert!(!matches("ghcr.io/*/tool", "ghcr.io/org/tool2"));
    assert!(!matches("docker.io/library/*", "docker.io/someuser/tool"));
    assert!(matches("docker.io/library/alpine", "docker.io/library/alpine"));
    assert!(!matches("docker.io/library/alpine", "docker.io/library/alpine2"));
}

#[test]
fn nothing_configured_is_off() {
    assert!(Access::new(&AccessConfig::default()).expect("valid").is_none());
}

#[tokio::test]
async fn basic_auth_and_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = htpasswd(dir.path());
    let access = policy(
        r#"
        anonymous = ["docker.io/library/*"]
        [[rules]]
        users = ["alice"]
        repos = ["ghcr.io/myorg/*"]
        [[rules]]
        users = ["*"]
        repos = ["docker.io/*"]
        "#,
        Some(&path),
    );
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let alice = access
        .identify(local, None, Some(&basic("alice", "wonderland")))
        .await
        .expect("alice");
    assert_eq!(alice, Identity::User("alice".into()));
    assert!(matches!(
        access.identify(local, None, Some(&basic("alice", "nope"))).await,
        Err(Refusal::Unauthenticated(_))
    ));
    assert!(matches!(
        access.identify(local, None, Some(&basic("eve", "x"))).await,
        Err(Refusal::Unauthenticated(_))
    ));
    let bob = access
        .identify(local, None, Some(&basic("bob", "builder")))
        .await
        .expect("bob");

    let (ghcr, private) = repo("ghcr.io", "myorg/app");
    assert_eq!(access.authorize(&alice, &ghcr, &private), Ok(()));
    assert!(matches!(access.authorize(&bob, &ghcr, &private), Err(Refusal::Denied(m)) if m.contains("bob")));
    assert!(matches!(
        access.authorize(&Identity::Anonymous, &ghcr, &private),
        Err(Refusal::Unauthenticated(_))
    ));

    let (hub, official) = repo("docker.io", "alpine");
    assert_eq!(access.authorize(&Identity::Anonymous, &hub, &official), Ok(()));
    let (hub, user_repo) = repo("docker.io", "someuser/tool");
    assert_eq!(access.authorize(&bob, &hub, &user_repo), Ok(()));
    assert!(access.authorize(&Identity::Anonymous, &hub, &user_repo).is_err());
    assert_eq!(access.check_login(&Identity::Anonymous), Ok(()));
}

#[tokio::test]
async fn certificate_names_are_identities() {
    let access = policy(
        "client_certificates = \"required\"\n[[rules]]\nusers = [\"ci\"]\nrepos = [\"*\"]",
        None,
    );
    let ci = access
        .identify("::1".parse().expect("ip"), Some("ci"), None)
        .await
        .expect("ci");
    let (hub, name) = repo("docker.io", "alpine");
    assert_eq!(access.authorize(&ci, &hub, &name), Ok(()));
    assert!(
        access.check_login(&Identity::Anonymous).is_err(),
        "anonymous clients are challenged at /v2/"
    );
}

#[tokio::test]
async fn address_allow_list() {
    let access = policy("allow_cidrs = [\"10.0.0.0/8\", \"::1\"]", None);
    assert!(access
        .identify("10.1.2.3".parse().expect("ip"), None, None)
        .await
        .is_ok());
    assert!(access
        .identify("::ffff:10.1.2.3".parse().expect("ip"), None, None)
        .await
        .is_ok());
    assert!(access.identify("::1".parse().expect("ip"), None, None).await.is_ok());
    let refused = access.identify("192.0.2.1".parse().expect("ip"), None, None).await;
    assert!(matches!(refused, Err(Refusal::Denied(m)) if m.contains("allow_cidrs")));
    let (hub, name) = repo("docker.io", "alpine");
    assert_eq!(
        access.authorize(&Identity::Anonymous, &hub, &name),
        Ok(()),
        "no identities: anonymous may pull"
    );
}

#[test]
fn non_bcrypt_entries_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, "carol:{SHA}abc\n").expect("write");
    let config = AccessConfig {
        htpasswd: Some(path),
        ..Default::default()
    };
    assert!(matches!(Access::new(&config), Err(Error::NotBcrypt { line: 1, .. })));
}
