//! The mirror's own bearer tokens, which every client request may carry: a string the mirror
//! did not sign never verifies, a token it signed reads back as issued (access and refresh
//! tokens each only as their own kind, for their own service), and a token altered in any byte
//! either fails or still says exactly what was signed.
#![no_main]

use std::time::SystemTime;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use regmirror::access::token::{Grant, Tokens, Verified};
use regmirror::access::Action;

const SERVICE: &str = "regmirror";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    presented: &'a str,
    user: Option<&'a str>,
    grants: Vec<(&'a str, &'a str, Vec<&'a str>)>,
    edits: Vec<(u16, u8)>,
}

fuzz_target!(|input: Input<'_>| {
    let tokens = Tokens::from_secret(b"regmirror fuzzing key, 32 bytes");
    assert_eq!(tokens.verify_access(input.presented, SERVICE), None, "forged access");
    assert_eq!(tokens.verify_refresh(input.presented, SERVICE), None, "forged refresh");

    let grants: Vec<Grant> = (input.grants.iter())
        .map(|(kind, name, actions)| Grant {
            kind: (*kind).to_owned(),
            name: (*name).to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        })
        .collect();
    // Each repository grant's known actions, in the order scopes list them; none known: no grant.
    let granted = (grants.iter())
        .filter(|g| g.kind == "repository")
        .map(|g| {
            let known = Action::ALL
                .into_iter()
                .filter(|a| g.actions.iter().any(|w| w == a.as_str()));
            (g.name.clone(), known.collect::<Vec<_>>())
        })
        .filter(|(_, actions)| !actions.is_empty())
        .collect();
    let now = SystemTime::now();
    let access = tokens.access(SERVICE, input.user, grants, now).expect("sign");
    let want = Verified {
        user: input.user.filter(|u| !u.is_empty()).map(str::to_owned),
        grants: granted,
    };
    assert_eq!(tokens.verify_access(&access, SERVICE).as_ref(), Some(&want));
    assert_eq!(
        tokens.verify_access(&access, "another"),
        None,
        "another service's token"
    );
    assert_eq!(
        tokens.verify_refresh(&access, SERVICE),
        None,
        "an access token refreshes"
    );
    let other_key = Tokens::from_secret(b"another key entirely, of 32 byte");
    assert_eq!(other_key.verify_access(&access, SERVICE), None, "another key's token");

    let mut altered = access.clone().into_bytes();
    for (at, byte) in &input.edits {
        let at = usize::from(*at) % altered.len();
        altered[at] = *byte;
    }
    if let Ok(altered) = String::from_utf8(altered) {
        if let Some(verified) = tokens.verify_access(&altered, SERVICE) {
            assert_eq!(verified, want, "{altered:?} verifies as something else than {access:?}");
        }
    }

    if let Some(user) = input.user.filter(|u| !u.is_empty()) {
        let refresh = tokens.refresh(SERVICE, user, now).expect("sign");
        assert_eq!(tokens.verify_refresh(&refresh, SERVICE).as_deref(), Some(user));
        assert_eq!(tokens.verify_access(&refresh, SERVICE), None, "a refresh token pulls");
    }
});
