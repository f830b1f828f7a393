//! Where configuration values come from, lowest precedence first: defaults, the TOML file,
//! `.env`, the environment, the command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};

use super::{ConfigError, ENV_PREFIX, Flags, RawConfig, invalid};

/// The names every source may use (TOML keys, and env names after the prefix); the keys of
/// the `[auth]` table appear as `auth.<key>` (their env names are `KMS_<KEY>`).
fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(RawConfig::default()) {
        for (key, value) in map {
            match (key.as_str(), value) {
                ("auth", serde_json::Value::Object(auth)) => {
                    keys.extend(
                        auth.keys()
                            .filter(|k| *k != "providers")
                            .map(|k| format!("auth.{k}")),
                    );
                }
                _ => {
                    keys.insert(key);
                }
            }
        }
    }
    keys
}

/// `KMS_*` variables from a `.env` file, as a figment provider of their own.
struct DotEnv {
    values: Dict,
}

impl DotEnv {
    fn load(path: &Path, known: &BTreeSet<String>) -> Result<Self, ConfigError> {
        let mut values = Dict::new();
        if !path.exists() {
            return Ok(Self { values });
        }
        let err = |e: dotenvy::Error| ConfigError::DotEnv {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        for item in dotenvy::from_path_iter(path).map_err(err)? {
            let (name, value) = item.map_err(err)?;
            if let Some(key) = env_key(&name, known) {
                let parsed = value
                    .parse::<figment::value::Value>()
                    .unwrap_or_else(|never| match never {});
                match key.split_once('.') {
                    Some((table, inner)) => {
                        if let figment::value::Value::Dict(_, dict) = values
                            .entry(table.to_owned())
                            .or_insert_with(|| Dict::new().into())
                        {
                            dict.insert(inner.to_owned(), parsed);
                        }
                    }
                    None => {
                        values.insert(key, parsed);
                    }
                }
            }
        }
        Ok(Self { values })
    }
}

/// The config key of a `KMS_*` variable, or None when the proxy does not own that name
/// (kms-core reads other `KMS_*` variables from the same environment).
fn env_key(name: &str, known: &BTreeSet<String>) -> Option<String> {
    let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    if known.contains(&key) {
        return Some(key);
    }
    let nested = format!("auth.{key}");
    known.contains(&nested).then_some(nested)
}

impl figment::Provider for DotEnv {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(".env file")
    }
    fn data(&self) -> Result<Map<figment::Profile, Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.values.clone()))
    }
}

/// `KMS_PROXY_CONFIG` as a `.env` file sets it, if it does.
fn dotenv_config_file(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |e: dotenvy::Error| ConfigError::DotEnv {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    for item in dotenvy::from_path_iter(path).map_err(err)? {
        let (name, value) = item.map_err(err)?;
        if name == "KMS_PROXY_CONFIG" {
            return Ok(Some(PathBuf::from(value)));
        }
    }
    Ok(None)
}

/// Merge every source into the raw configuration.
pub fn load(flags: &Flags) -> Result<RawConfig, ConfigError> {
    let known = known_keys();
    // The file named by the flag, the environment, or `.env` (the same precedence as values).
    let file = match (&flags.config, std::env::var_os("KMS_PROXY_CONFIG")) {
        (Some(file), _) => Some(file.clone()),
        (None, Some(file)) => Some(PathBuf::from(file)),
        (None, None) => dotenv_config_file(Path::new(".env"))?,
    };
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(invalid(
                "config",
                format!("configuration file {} not found", file.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let known_env = known.clone();
    figment = figment
        .merge(DotEnv::load(Path::new(".env"), &known)?)
        .merge(Env::prefixed(ENV_PREFIX).filter_map(move |k| {
            env_key(&format!("{ENV_PREFIX}{}", k.as_str()), &known_env).map(Into::into)
        }))
        .merge(Serialized::defaults(flags));
    Ok(figment.extract()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_cover_the_struct() {
        let keys = known_keys();
        assert!(keys.contains("port") && keys.contains("https_p12_password"));
        assert_eq!(env_key("KMS_PORT", &keys).as_deref(), Some("port"));
        assert_eq!(env_key("KMS_DATABASE_URL", &keys), None);
        assert_eq!(
            env_key("KMS_JWT_ISSUER_URI", &keys).as_deref(),
            Some("auth.jwt_issuer_uri")
        );
        assert_eq!(env_key("KMS_PROVIDERS", &keys), None);
    }
}
