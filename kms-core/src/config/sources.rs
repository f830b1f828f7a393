//! The `KMS_*` variables kms-core reads (from the environment or a `.env` file), each named
//! explicitly: the proxy reads other `KMS_*` variables from the same environment, so nothing
//! is guessed from a prefix. Variables that name an option of the reference server this core
//! does not have get a warning that says so.

use std::path::Path;

use figment::value::{Dict, Map, Value};

use super::ConfigError;

/// Environment variable -> configuration key.
pub const ENV_NAMES: [(&str, &str); 30] = [
    ("KMS_SOCKET", "socket"),
    ("KMS_DATA_DIR", "data_dir"),
    ("KMS_ROOT_DATA_PATH", "root_data_path"),
    ("KMS_DATABASE_TYPE", "database_type"),
    ("KMS_DATABASE_URL", "database_url"),
    ("KMS_SQLITE_PATH", "sqlite_path"),
    ("KMS_DATABASE_MAX_CONNECTIONS", "database_max_connections"),
    ("KMS_MASTER_KEY_FILE", "master_key_file"),
    ("KMS_DEV", "dev"),
    ("KMS_CORE_MAX_BODY_SIZE", "max_body_size"),
    ("KMS_CORE_MAX_LARGE_REQUESTS", "max_large_requests"),
    ("KMS_CORE_ADMIN_ADDRESS", "admin_address"),
    ("KMS_CORE_LISTEN", "listen"),
    ("KMS_CORE_TLS_CERT_FILE", "tls_cert_file"),
    ("KMS_CORE_TLS_KEY_FILE", "tls_key_file"),
    ("KMS_PROXY_CA_CERT_FILE", "proxy_ca_cert_file"),
    ("KMS_PROXY_ALLOWED_CN", "proxy_allowed_cn"),
    ("KMS_LOG_FORMAT", "log_format"),
    (
        "KMS_CORE_ROTATION_CHECK_INTERVAL",
        "rotation_check_interval",
    ),
    ("KMS_CORE_DRAIN_TIMEOUT", "drain_timeout"),
    ("KMS_CORE_HEADER_READ_TIMEOUT", "header_read_timeout"),
    ("KMS_CORE_HANDSHAKE_TIMEOUT", "handshake_timeout"),
    ("KMS_HSM_MODULE", "hsm_module"),
    ("KMS_HSM_SLOT", "hsm_slot"),
    ("KMS_HSM_TOKEN_LABEL", "hsm_token_label"),
    ("KMS_HSM_PIN_FILE", "hsm_pin_file"),
    ("KMS_HSM_KEK_LABEL", "hsm_kek_label"),
    ("KMS_HSM_ADMIN", "hsm_admin"),
    ("KMS_HSM_SESSIONS", "hsm_sessions"),
    ("KMS_CORE_CONFIG", ""),
];

/// Keys whose environment value is a comma-separated list.
const LISTS: [&str; 2] = ["proxy_allowed_cn", "hsm_admin"];
/// Keys whose environment value is a boolean (`true`/`1`/`yes`/`on` or their opposites).
const BOOLEANS: [&str; 1] = ["dev"];

/// Options of the reference server (its `KMS_*` names) that this core does not have, with
/// what to do instead. The proxy's own options (port, TLS, authentication) are not here.
const REFERENCE_ONLY: [(&str, &str); 14] = [
    (
        "KMS_CLEAR_DATABASE",
        "not supported: drop the database yourself",
    ),
    (
        "KMS_REDIS_MASTER_PASSWORD",
        "Redis is not supported: sqlite or postgresql",
    ),
    (
        "KMS_REDIS_FINDEX_LABEL",
        "Redis is not supported: sqlite or postgresql",
    ),
    ("KMS_HSM_MODEL", "any PKCS#11 module works: KMS_HSM_MODULE"),
    (
        "KMS_HSM_PASSWORD",
        "the PIN: KMS_HSM_PIN or KMS_HSM_PIN_FILE",
    ),
    (
        "KMS_KEY_ENCRYPTION_KEY",
        "the HSM key-encryption key: KMS_HSM_KEK_LABEL",
    ),
    (
        "KMS_TMP_PATH",
        "not needed: kms-core writes no temporary files",
    ),
    ("KMS_PRIVILEGED_USERS", "HSM administrators: KMS_HSM_ADMIN"),
    ("KMS_NON_REVOCABLE_KEY_ID", "not supported"),
    ("KMS_GOOGLE_CSE_ENABLE", "Google CSE is not supported"),
    ("KMS_MS_DKE_SERVICE_URL", "Microsoft DKE is not supported"),
    (
        "KMS_OTLP_URL",
        "OpenTelemetry export is not supported: scrape /metrics",
    ),
    ("KMS_UI_INDEX_HTML_FOLDER", "there is no web UI"),
    (
        "KMS_SQLITE_KEY",
        "SQLCipher is not supported: keys are wrapped at rest anyway",
    ),
];

/// The reference-only variables set in `environment`, each with its hint, for a warning.
pub fn reference_only_variables(
    environment: impl Iterator<Item = (String, String)>,
) -> Vec<(String, &'static str)> {
    environment
        .filter_map(|(name, _)| {
            REFERENCE_ONLY
                .iter()
                .find(|(reference, _)| *reference == name)
                .map(|(_, hint)| (name, *hint))
        })
        .collect()
}

/// Configuration values taken from `KMS_*` variables, as a figment provider.
pub struct EnvValues {
    values: Dict,
    name: &'static str,
}

fn value_of(key: &str, text: &str) -> Value {
    if LISTS.contains(&key) {
        let items: Vec<Value> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::from(s.to_owned()))
            .collect();
        return Value::from(items);
    }
    if BOOLEANS.contains(&key) {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => return Value::from(true),
            "0" | "false" | "no" | "off" | "" => return Value::from(false),
            _ => {}
        }
    }
    text.parse::<Value>().unwrap_or_else(|never| match never {})
}

impl EnvValues {
    pub fn from_vars(vars: impl Iterator<Item = (String, String)>, name: &'static str) -> Self {
        let mut values = Dict::new();
        for (var, text) in vars {
            if let Some((_, key)) = ENV_NAMES.iter().find(|(v, k)| *v == var && !k.is_empty()) {
                values.insert((*key).to_owned(), value_of(key, &text));
            }
        }
        Self { values, name }
    }

    /// The `KMS_*` variables of a `.env` file (none when there is no such file).
    pub fn from_dot_env(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Ok(Self::from_vars(std::iter::empty(), ".env file"));
        }
        let fail =
            |e: dotenvy::Error| ConfigError::Source(format!("cannot read {}: {e}", path.display()));
        let mut vars = Vec::new();
        for item in dotenvy::from_path_iter(path).map_err(fail)? {
            vars.push(item.map_err(fail)?);
        }
        Ok(Self::from_vars(vars.into_iter(), ".env file"))
    }
}

impl figment::Provider for EnvValues {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<figment::Profile, Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.values.clone()))
    }
}
