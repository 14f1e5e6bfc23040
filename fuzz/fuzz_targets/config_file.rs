//! The TOML config file, as `serve --config` reads it: never a panic, and a refusal is the one
//! line the CLI prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::config_file;

fuzz_target!(|text: &str| {
    if let Err(message) = config_file(text) {
        assert!(!message.contains('\n'), "{message:?}");
    }
});
