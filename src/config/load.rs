//! Reading a [`Config`]: defaults → TOML file → environment, then validation.

use std::ffi::OsString;
use std::path::Path;

use config::{Environment, File, FileFormat, Map};

use super::{Config, ConfigError};

/// Prefix of environment overrides: `PGROUTE_LISTEN`, `PGROUTE_LAG__MAX_BYTES`, …
pub const ENV_PREFIX: &str = "PGROUTE";

/// Top-level keys holding a plain value, settable as `PGROUTE_<KEY>`.
const TOP_LEVEL_VALUES: &[&str] = &["listen", "max_client_conn"];

/// Lists of names, set from the environment as comma-separated values
/// (`PGROUTE_ROUTING__WRITE_FUNCTIONS=audit.log_it,touch`).
const LIST_VALUES: &[&str] = &["routing.write_functions", "routing.read_functions"];

/// Arrays of tables, which only the file can set.
const FILE_ONLY: &[&str] = &["users", "nodes", "groups", "rules"];

/// Reads the configuration: defaults, then the TOML file at `path` (if any), then environment
/// overrides, and validates the result.
///
/// An override is `PGROUTE_<KEY>` for a top-level key (`PGROUTE_LISTEN=127.0.0.1:7000`) or
/// `PGROUTE_<SECTION>__<KEY>` for a key in a section (`PGROUTE_LAG__MAX_BYTES=1MB`,
/// `PGROUTE_POOL__MAX_SIZE=5`, `PGROUTE_CONSISTENCY__READ_YOUR_WRITES=off`). Values are written
/// as in the file, without TOML quotes. `[[users]]` and `[[nodes]]` come from the file only: a
/// `PGROUTE_USERS__…` or `PGROUTE_NODES__…` variable is an error. Other `PGROUTE_<NAME>`
/// variables without `__` that name no top-level key (such as `PGROUTE_CONFIG`) are left to
/// the command line and ignored here.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars_os())
}

/// Parses and validates a TOML document, with defaults for missing keys and no environment
/// overrides.
pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
    config::Config::builder()
        .add_source(File::from_str(toml, FileFormat::Toml))
        .build()?
        .try_deserialize::<Config>()?
        .validate()
}

/// [`load`] with the environment given as `vars`, so that tests need not touch the process's.
pub(super) fn load_with_env(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, ConfigError> {
    let overrides = environment_overrides(vars)?;
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        // Always TOML, whatever the file is called.
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .list_separator(",");
    for key in LIST_VALUES {
        environment = environment.with_list_parse_key(key);
    }
    let environment = environment
        // Numbers are parsed here ("5" for a usize field); a string field given "12345" still
        // gets text, as the `config` crate turns numbers back into strings on demand.
        .try_parsing(true)
        .source(Some(overrides));
    // Defaults are the `Default` impls, filled in by `#[serde(default)]` for missing keys.
    builder
        .add_source(environment)
        .build()?
        .try_deserialize::<Config>()?
        .validate()
}

/// The `PGROUTE_*` variables that are configuration overrides, by variable name.
fn environment_overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Map<String, String>, ConfigError> {
    // The `config` crate matches names case-insensitively; so do we.
    let prefix = format!("{ENV_PREFIX}_").to_lowercase();
    let mut overrides = Map::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else {
            continue;
        };
        let lower = name.to_lowercase();
        let Some(key) = lower.strip_prefix(&prefix) else {
            continue;
        };
        match key.split_once("__") {
            Some((section, _)) if FILE_ONLY.contains(&section) => {
                return Err(ConfigError::Invalid {
                    key: name.to_owned(),
                    reason: format!("[[{section}]] can only be set in the config file"),
                });
            }
            Some(_) => {}
            None if TOP_LEVEL_VALUES.contains(&key) => {}
            None => continue,
        }
        let value = value.into_string().map_err(|_| ConfigError::Invalid {
            key: name.to_owned(),
            reason: "value is not valid UTF-8".to_owned(),
        })?;
        overrides.insert(name.to_owned(), value);
    }
    Ok(overrides)
}
