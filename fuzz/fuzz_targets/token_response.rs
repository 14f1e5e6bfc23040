//! A token endpoint's JSON answer, which the upstream (or whatever its realm names) writes: the
//! token becomes the `Authorization` value and is cached for what `expires_in` allows, never
//! longer, just as the mirror does with it.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::upstream_token_answer;
use regmirror::upstream::auth::Tokens;

fuzz_target!(|body: &[u8]| {
    let Some((value, life)) = upstream_token_answer(body) else {
        return;
    };
    assert!(value.as_bytes().starts_with(b"Bearer "), "{value:?}");
    assert!(value.is_sensitive(), "a token is kept out of logs");
    // serde skips the fields it does not know without checking their UTF-8, where a `Value`
    // does not; and it reads a struct from an array too (`[token, access_token, expires_in]`).
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let field = if json.is_array() {
            json.get(2)
        } else {
            json.get("expires_in")
        };
        let expires_in = field.and_then(|e| e.as_u64()).unwrap_or(60);
        assert!(
            life <= Duration::from_secs(expires_in),
            "kept {life:?} for {expires_in}"
        );
    }

    let tokens = Tokens::default();
    tokens.put("repository:a/b:pull", value.clone(), life);
    let kept = tokens.get("repository:a/b:pull");
    assert!(kept.is_none() || kept == Some(value));
});
