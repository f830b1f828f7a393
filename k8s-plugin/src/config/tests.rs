//! The configuration is checked key by key before start.

use super::*;

fn load(env: &[(&str, &str)], flags: Flags) -> Result<Config, String> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    load_from(&flags, env, Path::new("/nonexistent/.env")).map_err(|e| e.to_string())
}

#[test]
fn each_key_checked_before_start() {
    let token = std::env::temp_dir().join(format!("plugin-token-{}", std::process::id()));
    let _ = std::fs::write(&token, "t");
    let t = token.display().to_string();
    let ok = load(
        &[
            ("KMS_PLUGIN_KMS_URL", "https://kms:8443"),
            ("KMS_PLUGIN_KEY_TAG", "k8s, etcd"),
            ("KMS_PLUGIN_API_TOKEN_FILE", &t),
            ("KMS_PLUGIN_HEALTH_TTL", "2"),
        ],
        Flags::default(),
    );
    let config = ok.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.key,
        KeySelector::Tags(vec!["k8s".into(), "etcd".into()])
    );
    assert_eq!(config.health_ttl, Duration::from_secs(2));
    assert_eq!(config.credential, Credential::ApiToken(token.clone()));
    // A flag wins over the environment.
    let flags = Flags {
        key_id: Some("uid-1".into()),
        ..Flags::default()
    };
    let config = load(
        &[
            ("KMS_PLUGIN_KMS_URL", "https://kms:8443"),
            ("KMS_PLUGIN_API_TOKEN_FILE", &t),
        ],
        flags,
    );
    assert_eq!(
        config.map(|c| c.key).ok(),
        Some(KeySelector::Uid("uid-1".into()))
    );
    for (env, expected) in [
        (vec![("KMS_PLUGIN_API_TOKEN_FILE", t.as_str())], "kms_url"),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "http://kms"),
                ("KMS_PLUGIN_KEY_ID", "k"),
            ],
            "must be https://",
        ),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "https://kms"),
                ("KMS_PLUGIN_KEY_ID", "k"),
            ],
            "no credential",
        ),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "https://kms"),
                ("KMS_PLUGIN_KEY_ID", "k"),
                ("KMS_PLUGIN_API_TOKEN_FILE", t.as_str()),
                ("KMS_PLUGIN_JWT_FILE", t.as_str()),
            ],
            "several credentials",
        ),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "https://kms"),
                ("KMS_PLUGIN_KEY_ID", "k"),
                ("KMS_PLUGIN_JWT_FILE", "/nonexistent/token"),
            ],
            "jwt_file",
        ),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "https://kms"),
                ("KMS_PLUGIN_KEY_ID", "k"),
                ("KMS_PLUGIN_API_TOKEN_FILE", t.as_str()),
                ("KMS_PLUGIN_KMS_TIMEOUT", "0"),
            ],
            "kms_timeout",
        ),
        (
            vec![
                ("KMS_PLUGIN_KMS_URL", "https://kms"),
                ("KMS_PLUGIN_COLOUR", "blue"),
            ],
            "colour",
        ),
    ] {
        let err = load(&env, Flags::default()).err().unwrap_or_default();
        assert!(err.contains(expected), "{env:?}: {err}");
    }
    let _ = std::fs::remove_file(&token);
}
