//! Reading the TOML config file into `ServeOptions`: a bad value names the key it sits under.

use std::path::Path;

use super::options::ServeOptions;
use super::Error;

pub fn read(path: &Path) -> Result<ServeOptions, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let options = parse(&text).map_err(|message| Error::Parse {
        path: path.to_owned(),
        message,
    })?;
    warn_if_secrets_exposed(path, &options);
    Ok(options)
}

/// The file's text as options, or one line saying what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<ServeOptions, String> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| describe(&e, text))
}

/// One line naming the key of a bad value, or the line of a syntax error.
fn describe(error: &serde_path_to_error::Error<toml::de::Error>, text: &str) -> String {
    let message = error.inner().message().trim().replace('\n', ", ");
    let line = |span: std::ops::Range<usize>| text.get(..span.start).map(|before| before.matches('\n').count() + 1);
    match (error.path().to_string().as_str(), error.inner().span().and_then(line)) {
        (".", Some(line)) => format!("line {line}: {message}"),
        (".", None) => message,
        (key, _) => format!("{key}: {message}"),
    }
}

/// Credentials in a file others can read are credentials others have.
fn warn_if_secrets_exposed(path: &Path, options: &ServeOptions) {
    use std::os::unix::fs::PermissionsExt;
    let secrets =
        options.upstream_credentials.is_some() || options.registries.iter().flatten().any(|r| r.has_password());
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    if secrets && mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the config file holds credentials but other users can read it; chmod 600 it"
        );
    }
}
