//! A Basic `Authorization` value (what follows `Basic `), from any client: decoded without a
//! panic, never to a user name holding a `:`, and credentials as clients encode them
//! (`user:password`, base64) read back as sent, a password's own `:` included.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::basic_credentials;

fuzz_target!(|text: &str| {
    if let Some((user, _)) = basic_credentials(text) {
        assert!(!user.contains(':'), "{text:?} gave user {user:?}");
    }
    // The same text as the credentials themselves.
    let Some((user, password)) = text.split_once(':') else {
        return;
    };
    let sent = base64::engine::general_purpose::STANDARD.encode(text);
    assert_eq!(
        basic_credentials(&sent),
        Some((user.to_owned(), password.to_owned())),
        "{sent:?}"
    );
});
