//! Unit tests of the configuration, one file per topic, and the fixtures they share.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;

use super::load::load_with_env;
use super::*;

const EXAMPLE: &str = include_str!("../../../config/pgroute.toml");

const USER_APP: &str = r#"
[[users]]
name = "app"
password = "app-secret"
"#;

const PRIMARY_PG1: &str = r#"
[[nodes]]
name = "pg1"
addr = "127.0.0.1:5432"
role = "primary"
"#;

const REPLICA_PG2: &str = r#"
[[nodes]]
name = "pg2"
addr = "127.0.0.1:5433"
role = "replica"
"#;

/// A valid config with `top` before the arrays and `tail` (sections) after them.
fn minimal_with(top: &str, tail: &str) -> String {
    format!("{top}\n{USER_APP}\n{PRIMARY_PG1}\n{REPLICA_PG2}\n{tail}")
}

fn minimal() -> String {
    minimal_with("", "")
}

/// The key and reason of the validation error `toml` must produce.
fn invalid_of(toml: &str) -> (String, String) {
    match from_toml_str(toml) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected a validation error for\n{toml}\ngot {other:?}"),
    }
}

/// The message of the load (parse/type) error `toml` must produce.
fn load_error_of(toml: &str) -> String {
    match from_toml_str(toml) {
        Err(err @ ConfigError::Load { .. }) => err.to_string(),
        other => panic!("expected a load error for\n{toml}\ngot {other:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// A config file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "pgroute-config-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp config");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_minimal_with_env(name: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = TempFile::new(name, &minimal());
    load_with_env(Some(&file.0), vars(env))
}

mod defaults;
mod loading;
mod parsing;
mod validation;
