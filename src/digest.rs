//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and the streaming hasher that checks them.

use std::fmt;
use std::io;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("digest must look like algorithm:hex")]
    Malformed,
    #[error("unsupported digest algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    #[error("digest hex must be {0} lowercase hex characters")]
    BadHex(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: a known algorithm and lowercase hex of the right length, so it is
/// safe to use as a file name. In JSON (descriptors) it is the string, validated on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    /// The digest of `bytes` in `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// Whether `bytes` hash to this digest, in its algorithm.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Digest::of(self.algorithm, bytes) == *self
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (algorithm, hex) = s.split_once(':').ok_or(Error::Malformed)?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other if is_algorithm_grammar(other) => return Err(Error::UnsupportedAlgorithm(other.to_owned())),
            _ => return Err(Error::Malformed),
        };
        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(lower_hex) {
            return Err(Error::BadHex(algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.to_string()
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*` from the image spec.
fn is_algorithm_grammar(s: &str) -> bool {
    let component = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.split(['+', '.', '_', '-']).all(component)
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// Incremental hashing in the algorithm of the digest being checked.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// A hasher is a sink, so a reader is hashed with `io::copy(&mut reader, &mut hasher)`.
impl io::Write for Hasher {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().expect("valid");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        let check = |s: &str, want: Error| assert_eq!(s.parse::<Digest>(), Err(want), "{s}");
        check("sha256", Error::Malformed);
        check(&EMPTY.to_uppercase().replacen("SHA256", "sha256", 1), Error::BadHex(64));
        check("sha256:abc", Error::BadHex(64));
        check("blake3:00", Error::UnsupportedAlgorithm("blake3".into()));
        check("../x:00", Error::Malformed);
        check("sha512:00", Error::BadHex(128));
    }

    #[test]
    fn hashes_a_reader() {
        let data = vec![7u8; 100_000];
        let mut h = Hasher::new(Algorithm::Sha256);
        assert_eq!(io::copy(&mut data.as_slice(), &mut h).expect("copy"), 100_000);
        assert_eq!(h.finish(), Digest::sha256_of(&data));
    }

    #[test]
    fn sha512_hashes() {
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert_eq!(h.finish().hex().len(), 128);
    }
}

#[cfg(test)]
mod properties;
