//! An htpasswd file, which an administrator writes: read without a panic, every user kept has a
//! bcrypt hash and no `:` in its name, and a refusal names a line the file has.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::htpasswd;

fuzz_target!(|text: &str| {
    match htpasswd(text) {
        Ok(users) => {
            for (user, hash) in users {
                assert!(!user.contains(':') && hash.starts_with("$2"), "{user:?}:{hash:?}");
            }
        }
        Err(line) => assert!(line >= 1 && line <= text.lines().count(), "line {line} of {text:?}"),
    }
});
