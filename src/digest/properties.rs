//! Properties of the digest parser over generated input.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn every_sha256_digest_parses_and_reads_back(hex in "[0-9a-f]{64}") {
        let text = format!("sha256:{hex}");
        let digest: Digest = text.parse().expect("a sha256 digest");
        prop_assert_eq!(digest.to_string(), text);
    }

    #[test]
    fn whatever_parses_reads_back_from_its_display(s in "sha(256|512):[0-9a-fA-F]{0,130}|\\PC{0,80}") {
        if let Ok(digest) = s.parse::<Digest>() {
            prop_assert_eq!(digest.to_string().parse::<Digest>().expect("its display"), digest);
        }
    }
}
