use std::os::unix::fs::PermissionsExt as _;

use super::*;

const SERVICE: &str = "mirror.lan:5000";

fn tokens() -> Tokens {
    Tokens::from_secret(&[7; KEY_BYTES])
}

#[test]
fn an_access_token_names_its_holder_and_what_it_may_pull() {
    let now = SystemTime::now();
    let grant = Grant::repository("team/app", &[Action::Pull]);
    let token = (tokens().access(SERVICE, Some("alice"), vec![grant], now)).expect("signed");
    let verified = tokens().verify_access(&token, SERVICE).expect("valid");
    assert_eq!(verified.user.as_deref(), Some("alice"));
    assert_eq!(verified.grants, [("team/app".to_owned(), vec![Action::Pull])]);
    let anonymous = tokens().access(SERVICE, None, Vec::new(), now).expect("signed");
    let verified = tokens().verify_access(&anonymous, SERVICE).expect("valid");
    assert_eq!(
        verified,
        Verified {
            user: None,
            grants: vec![]
        }
    );
}

#[test]
fn an_access_token_carries_each_names_actions_and_drops_what_it_does_not_know() {
    let grants = vec![
        Grant::repository("site.lan/team/app", &[Action::Pull, Action::Push]),
        Grant::repository("site.lan/team/old", &[Action::Delete]),
        Grant {
            kind: "repository".into(),
            name: "site.lan/team/odd".into(),
            actions: vec!["*".into(), "admin".into()],
        },
        Grant {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["pull".into()],
        },
    ];
    let token = tokens()
        .access(SERVICE, Some("alice"), grants, SystemTime::now())
        .expect("signed");
    let verified = tokens().verify_access(&token, SERVICE).expect("valid");
    assert_eq!(
        verified.grants,
        [
            ("site.lan/team/app".to_owned(), vec![Action::Pull, Action::Push]),
            ("site.lan/team/old".to_owned(), vec![Action::Delete]),
        ],
        "a grant naming no action this mirror knows, or no repository, grants nothing"
    );
}

#[test]
fn a_token_is_refused_once_expired_and_before_it_is_issued() {
    let now = SystemTime::now();
    let just_expired = now - ACCESS_TTL - Duration::from_secs(1);
    let token = tokens()
        .access(SERVICE, Some("alice"), Vec::new(), just_expired)
        .expect("signed");
    assert_eq!(tokens().verify_access(&token, SERVICE), None);
    let still_valid = now - ACCESS_TTL + Duration::from_secs(5);
    let token = tokens()
        .access(SERVICE, Some("alice"), Vec::new(), still_valid)
        .expect("signed");
    assert!(tokens().verify_access(&token, SERVICE).is_some());
    let future = now + Duration::from_secs(60);
    let token = tokens()
        .access(SERVICE, Some("alice"), Vec::new(), future)
        .expect("signed");
    assert_eq!(tokens().verify_access(&token, SERVICE), None);
}

#[test]
fn a_token_is_refused_under_another_key_or_service_or_tampered() {
    let token = tokens()
        .access(
            SERVICE,
            Some("alice"),
            vec![Grant::repository("a", &[Action::Pull])],
            SystemTime::now(),
        )
        .expect("signed");
    assert_eq!(
        Tokens::from_secret(&[8; KEY_BYTES]).verify_access(&token, SERVICE),
        None
    );
    assert_eq!(tokens().verify_access(&token, "other:5000"), None);
    // Mallory's claims under alice's signature.
    let mallory = tokens()
        .access(
            SERVICE,
            Some("mallory"),
            vec![Grant::repository("a", &[Action::Pull])],
            SystemTime::now(),
        )
        .expect("signed");
    let (claims, signature) = (
        mallory.rsplit_once('.').expect("jwt").0,
        token.rsplit_once('.').expect("jwt").1,
    );
    assert_eq!(tokens().verify_access(&format!("{claims}.{signature}"), SERVICE), None);
    assert_eq!(tokens().verify_access("not a token", SERVICE), None);
}

#[test]
fn refresh_and_access_tokens_are_not_interchangeable() {
    let now = SystemTime::now();
    let refresh = tokens().refresh(SERVICE, "alice", now).expect("signed");
    assert_eq!(tokens().verify_refresh(&refresh, SERVICE).as_deref(), Some("alice"));
    assert_eq!(tokens().verify_access(&refresh, SERVICE), None);
    let access = tokens()
        .access(SERVICE, Some("alice"), Vec::new(), now)
        .expect("signed");
    assert_eq!(tokens().verify_refresh(&access, SERVICE), None);
    let old = now - REFRESH_TTL - Duration::from_secs(1);
    let expired = tokens().refresh(SERVICE, "alice", old).expect("signed");
    assert_eq!(tokens().verify_refresh(&expired, SERVICE), None);
}

#[test]
fn the_key_is_created_private_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certs/token.key");
    let first = Tokens::load_or_create(&path).expect("created");
    let mode = std::fs::metadata(&path).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = first
        .access(SERVICE, Some("alice"), Vec::new(), SystemTime::now())
        .expect("signed");
    let again = Tokens::load_or_create(&path).expect("loaded");
    assert!(
        again.verify_access(&token, SERVICE).is_some(),
        "a restart keeps the key"
    );
    std::fs::write(&path, "short").expect("overwrite");
    assert!(matches!(Tokens::load_or_create(&path), Err(Error::BadKey(_))));
}

#[test]
fn scopes_parse_with_ports_and_several_actions() {
    let scope = Scope::parse("repository:registry.lan:5000/team/app:pull,push").expect("scope");
    assert_eq!(scope.name, "registry.lan:5000/team/app");
    assert_eq!(scope.actions, [Action::Pull, Action::Push]);
    let push = Scope::parse("repository:library/tiny:push").expect("scope");
    assert_eq!(push.actions, [Action::Push]);
    let all = Scope::parse("repository:site.lan/app:*").expect("scope");
    assert_eq!(all.actions, Action::ALL, "`*` asks for every action");
    let odd = Scope::parse("repository:site.lan/app:delete,admin,pull").expect("scope");
    assert_eq!(
        odd.actions,
        [Action::Pull, Action::Delete],
        "unknown actions ask for nothing"
    );
    assert_eq!(Scope::parse("registry:catalog:*"), None);
    assert_eq!(Scope::parse("repository::pull"), None);
    assert_eq!(Scope::parse("repository:nocolon"), None);
    assert_eq!(Scope::parse("repository:site.lan/app:admin"), None);
}
