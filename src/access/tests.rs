//! Unit tests for the access policy.

use super::*;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The policy, and the directory holding its token key.
fn policy(text: &str, htpasswd: Option<&Path>) -> (Access, tempfile::TempDir) {
    let mut config: AccessConfig = toml::from_str(text).expect("config");
    config.htpasswd = htpasswd.map(Path::to_owned);
    let dir = tempfile::tempdir().expect("tempdir");
    let access = Access::new(&config, &dir.path().join("token.key"))
        .expect("valid")
        .expect("on");
    (access, dir)
}

fn anonymous() -> Client {
    Client::proven(Identity::Anonymous)
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
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("token.key");
    assert!(Access::new(&AccessConfig::default(), &key).expect("valid").is_none());
    assert!(!key.exists(), "no key is made for a mirror without access control");
}

#[tokio::test]
async fn basic_auth_and_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = htpasswd(dir.path());
    let (access, _key) = policy(
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
    assert_eq!(alice, Client::proven(Identity::User("alice".into())));
    let alice = alice.identity;
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
        .expect("bob")
        .identity;

    let pull =
        |who: &Identity, registry: &Registry, repo: &RepoName| access.authorize(who, registry, repo, Action::Pull);
    let (ghcr, private) = repo("ghcr.io", "myorg/app");
    assert_eq!(pull(&alice, &ghcr, &private), Ok(()));
    assert!(matches!(pull(&bob, &ghcr, &private), Err(Refusal::Denied(m)) if m.contains("bob pull")));
    assert!(matches!(
        pull(&Identity::Anonymous, &ghcr, &private),
        Err(Refusal::Unauthenticated(_))
    ));

    let (hub, official) = repo("docker.io", "alpine");
    assert_eq!(pull(&Identity::Anonymous, &hub, &official), Ok(()));
    let (hub, user_repo) = repo("docker.io", "someuser/tool");
    assert_eq!(pull(&bob, &hub, &user_repo), Ok(()));
    assert!(pull(&Identity::Anonymous, &hub, &user_repo).is_err());
    assert!(
        access.check_login(&anonymous()).is_err(),
        "with users to log in as, /v2/ challenges a client that proved nothing"
    );
}

#[tokio::test]
async fn certificate_names_are_identities() {
    let (access, _key) = policy(
        "client_certificates = \"required\"\n[[rules]]\nusers = [\"ci\"]\nrepos = [\"*\"]",
        None,
    );
    let ci = access
        .identify("::1".parse().expect("ip"), Some("ci"), None)
        .await
        .expect("ci")
        .identity;
    let (hub, name) = repo("docker.io", "alpine");
    assert_eq!(access.authorize(&ci, &hub, &name, Action::Pull), Ok(()));
    assert!(
        access.check_login(&anonymous()).is_err(),
        "anonymous clients are challenged at /v2/"
    );
}

#[tokio::test]
async fn address_allow_list() {
    let (access, _key) = policy("allow_cidrs = [\"10.0.0.0/8\", \"::1\"]", None);
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
        access.authorize(&Identity::Anonymous, &hub, &name, Action::Pull),
        Ok(()),
        "no identities: anonymous may pull"
    );
    assert_eq!(
        access.check_login(&anonymous()),
        Ok(()),
        "nothing to log in with: no challenge"
    );
    assert!(access.tokens().is_none());
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
    let key = dir.path().join("token.key");
    assert!(matches!(
        Access::new(&config, &key),
        Err(Error::NotBcrypt { line: 1, .. })
    ));
}

#[tokio::test]
async fn bearer_tokens_carry_identity_and_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = htpasswd(dir.path());
    let (access, _key) = policy(
        "[[rules]]\nusers = [\"alice\"]\nrepos = [\"ghcr.io/team/*\"]",
        Some(&path),
    );
    let tokens = access.tokens().expect("a token service");
    let now = std::time::SystemTime::now();
    let grant = vec![token::Grant::repository("ghcr.io/team/app", &[Action::Pull])];
    let bearer = format!(
        "Bearer {}",
        tokens.access(token::SERVICE, Some("alice"), grant, now).expect("token")
    );
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let alice = access.identify(local, None, Some(&bearer)).await.expect("alice");
    assert_eq!(alice.identity, Identity::User("alice".into()));
    assert_eq!(access.check_login(&alice), Ok(()));
    let (ghcr, app) = repo("ghcr.io", "team/app");
    assert_eq!(
        access.admit(&alice, &ghcr, &app, "ghcr.io/team/app", Action::Pull),
        Ok(())
    );
    let (_, other) = repo("ghcr.io", "team/other");
    assert!(
        matches!(
            access.admit(&alice, &ghcr, &other, "ghcr.io/team/other", Action::Pull),
            Err(Refusal::Unauthenticated(_))
        ),
        "a token is good for the names it grants only, though the rules would allow more"
    );
    let (hub, alpine) = repo("docker.io", "alpine");
    assert!(
        matches!(access.admit(&alice, &hub, &alpine, "library/alpine", Action::Pull), Err(Refusal::Denied(m)) if m.contains("alice")),
        "what the rules refuse is a 403 naming the user, whatever the token"
    );

    let anonymous_token = tokens.access(token::SERVICE, None, Vec::new(), now).expect("token");
    let anon = (access
        .identify(local, None, Some(&format!("Bearer {anonymous_token}")))
        .await)
        .expect("anonymous");
    assert_eq!(access.check_login(&anon), Ok(()), "an anonymous token passes /v2/");
    assert!(access
        .admit(&anon, &ghcr, &app, "ghcr.io/team/app", Action::Pull)
        .is_err());

    let forged = Tokens::from_secret(&[1; 32]).access(token::SERVICE, Some("alice"), Vec::new(), now);
    let forged = format!("Bearer {}", forged.expect("token"));
    assert!(matches!(
        access.identify(local, None, Some(&forged)).await,
        Err(Refusal::Unauthenticated(_))
    ));
}

#[test]
fn rules_name_the_actions_they_allow() {
    let (access, _key) = policy(
        r#"
        client_certificates = "optional"
        anonymous = ["site.lan/public/*"]
        [[rules]]
        users = ["bob"]
        repos = ["site.lan/*"]
        [[rules]]
        users = ["ci"]
        repos = ["site.lan/gallery/*", "site.lan/public/*"]
        actions = ["pull", "push"]
        [[rules]]
        users = ["janitor"]
        repos = ["site.lan/*"]
        actions = ["delete"]
        "#,
        None,
    );
    let user = |name: &str| Identity::User(name.into());
    let (site, ui) = repo("site.lan", "gallery/ui");
    let (_, public) = repo("site.lan", "public/base");

    assert_eq!(access.authorize(&user("bob"), &site, &ui, Action::Pull), Ok(()));
    assert_eq!(
        access.authorize(&user("bob"), &site, &ui, Action::Push),
        Err(Refusal::Denied(
            "no access.rules entry lets bob push site.lan/gallery/ui".into()
        )),
        "a rule without actions allows pull only"
    );
    assert_eq!(access.authorize(&user("ci"), &site, &ui, Action::Push), Ok(()));
    assert_eq!(access.authorize(&user("ci"), &site, &ui, Action::Pull), Ok(()));
    assert!(
        matches!(access.authorize(&user("ci"), &site, &ui, Action::Delete), Err(Refusal::Denied(m)) if m.contains("ci delete")),
        "push does not bring delete with it"
    );
    assert_eq!(access.authorize(&user("janitor"), &site, &ui, Action::Delete), Ok(()));
    assert!(access.authorize(&user("janitor"), &site, &ui, Action::Push).is_err());
    assert!(access.authorize(&user("janitor"), &site, &ui, Action::Pull).is_err());

    assert_eq!(
        access.authorize(&Identity::Anonymous, &site, &public, Action::Pull),
        Ok(())
    );
    for action in [Action::Push, Action::Delete] {
        assert!(
            matches!(
                access.authorize(&Identity::Anonymous, &site, &public, action),
                Err(Refusal::Unauthenticated(m)) if m.contains(action.as_str())
            ),
            "anonymous globs grant pull only, never {action}"
        );
    }
    assert_eq!(
        access.authorize(&user("ci"), &site, &public, Action::Push),
        Ok(()),
        "a user's rule still applies where anonymous may pull"
    );
}

#[test]
fn actions_default_to_pull_and_spell_as_scopes_do() {
    let rule: RuleConfig = toml::from_str("users = [\"a\"]\nrepos = [\"*\"]").expect("rule");
    assert_eq!(rule.actions, [Action::Pull]);
    let rule: RuleConfig =
        toml::from_str("users = [\"a\"]\nrepos = [\"*\"]\nactions = [\"push\", \"delete\"]").expect("rule");
    assert_eq!(rule.actions, [Action::Push, Action::Delete]);
    assert!(toml::from_str::<RuleConfig>("users = [\"a\"]\nrepos = [\"*\"]\nactions = [\"Push\"]").is_err());
    let spelled: Vec<String> = Action::ALL.iter().map(Action::to_string).collect();
    assert_eq!(spelled, ["pull", "push", "delete"]);
}

#[test]
fn without_rules_every_known_user_may_do_anything_and_anonymous_only_pull() {
    let (access, _key) = policy(
        "client_certificates = \"optional\"\nanonymous = [\"docker.io/library/*\"]",
        None,
    );
    let (site, ui) = repo("site.lan", "gallery/ui");
    for action in Action::ALL {
        assert_eq!(
            access.authorize(&Identity::User("anyone".into()), &site, &ui, action),
            Ok(()),
            "{action}"
        );
    }
    let (hub, alpine) = repo("docker.io", "alpine");
    assert_eq!(
        access.authorize(&Identity::Anonymous, &hub, &alpine, Action::Pull),
        Ok(())
    );
    assert!(access
        .authorize(&Identity::Anonymous, &hub, &alpine, Action::Push)
        .is_err());
}

#[tokio::test]
async fn a_token_admits_only_the_actions_it_grants() {
    let (access, _key) = policy(
        "client_certificates = \"optional\"\n[[rules]]\nusers = [\"ci\"]\nrepos = [\"site.lan/*\"]\nactions = [\"pull\", \"push\", \"delete\"]",
        None,
    );
    let tokens = access.tokens().expect("a token service");
    let grant = token::Grant::repository("site.lan/gallery/ui", &[Action::Pull, Action::Push]);
    let signed = tokens.access(token::SERVICE, Some("ci"), vec![grant], std::time::SystemTime::now());
    let bearer = format!("Bearer {}", signed.expect("token"));
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let ci = access.identify(local, None, Some(&bearer)).await.expect("ci");
    assert_eq!(
        ci.token_scope,
        Some(vec![(
            "site.lan/gallery/ui".to_owned(),
            vec![Action::Pull, Action::Push]
        )])
    );
    let (site, ui) = repo("site.lan", "gallery/ui");
    let name = "site.lan/gallery/ui";
    assert_eq!(access.admit(&ci, &site, &ui, name, Action::Pull), Ok(()));
    assert_eq!(access.admit(&ci, &site, &ui, name, Action::Push), Ok(()));
    assert_eq!(
        access.admit(&ci, &site, &ui, name, Action::Delete),
        Err(Refusal::Unauthenticated(
            "the token does not grant delete on site.lan/gallery/ui".into()
        )),
        "the rules allow delete, the token does not: a 401, so the client fetches one that does"
    );
}
