use std::path::Path;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<Vec<_>>()
        .into_iter()
}

fn no_dot_env() -> &'static Path {
    Path::new("/nonexistent/.env")
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_from(&Flags::default(), env(vars), no_dot_env())
}

#[test]
fn defaults_then_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("core.toml");
    std::fs::write(
        &file,
        "max_body_size = 2048\ndrain_timeout = 5\nproxy_allowed_cn = [\"proxy\"]\ndev = true\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let defaults = load_env(&[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(defaults.max_body_size, 34 * 1024 * 1024);
    assert!(defaults.database_url.starts_with("sqlite://./data/kms.db"));
    let flags = Flags {
        config: Some(file.clone()),
        ..Flags::default()
    };
    let from_file = load_from(&flags, env(&[]), no_dot_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            from_file.max_body_size,
            from_file.drain_timeout.as_secs(),
            from_file.dev
        ),
        (2048, 5, true)
    );
    assert_eq!(from_file.proxy_allowed_cn, vec!["proxy".to_owned()]);
    let env_wins = load_from(
        &flags,
        env(&[
            ("KMS_CORE_MAX_BODY_SIZE", "4096"),
            ("KMS_PROXY_ALLOWED_CN", "a, b"),
        ]),
        no_dot_env(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env_wins.max_body_size, 4096);
    assert_eq!(
        env_wins.proxy_allowed_cn,
        vec!["a".to_owned(), "b".to_owned()]
    );
    let flag_wins = Flags {
        config: Some(file),
        max_body_size: Some(8192),
        ..Flags::default()
    };
    let flag_wins = load_from(
        &flag_wins,
        env(&[("KMS_CORE_MAX_BODY_SIZE", "4096")]),
        no_dot_env(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flag_wins.max_body_size, 8192);
}

#[test]
fn a_dot_env_file_is_read_below_the_environment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dot_env = dir.path().join(".env");
    std::fs::write(
        &dot_env,
        "KMS_DEV=true\nKMS_CORE_DRAIN_TIMEOUT=7\nKMS_PORT=1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = load_from(
        &Flags::default(),
        env(&[("KMS_CORE_DRAIN_TIMEOUT", "9")]),
        &dot_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.dev);
    assert_eq!(c.drain_timeout.as_secs(), 9);
}

#[test]
fn the_reference_database_names_work_and_contradictions_are_refused() {
    let pg = load_env(&[
        ("KMS_DATABASE_TYPE", "postgresql"),
        ("KMS_DATABASE_URL", "postgres://kms@db:5432/kms"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pg.database_url, "postgres://kms@db:5432/kms");
    let sqlite = load_env(&[("KMS_SQLITE_PATH", "/var/lib/kms")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sqlite.database_url, "sqlite:///var/lib/kms/kms.db?mode=rwc");
    let root = load_env(&[("KMS_ROOT_DATA_PATH", "/srv/kms")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(root.data_dir, Path::new("/srv/kms"));
    let error = |vars: &[(&str, &str)]| {
        load_env(vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(error(&[("KMS_DATABASE_TYPE", "mysql")]).contains("sqlite or postgresql"));
    assert!(error(&[("KMS_DATABASE_TYPE", "postgresql")]).contains("needs database_url"));
    assert!(
        error(&[
            ("KMS_DATABASE_TYPE", "sqlite"),
            ("KMS_DATABASE_URL", "postgres://h/d")
        ])
        .contains("but database_type is sqlite")
    );
    let text = error(&[("KMS_DATABASE_URL", "mysql://h/d")]);
    assert!(
        text.contains("unknown scheme")
            && text.contains("sqlite://")
            && text.contains("postgres://"),
        "the supported schemes: {text}"
    );
    let text = error(&[("KMS_CORE_MAX_BODY_SIZE", "lots")]);
    assert!(
        text.contains("max_body_size") && text.contains("KMS_CORE_MAX_BODY_SIZE"),
        "{text}"
    );
    assert!(error(&[("KMS_LOG_FORMAT", "xml")]).contains("log_format"));
    assert!(error(&[("KMS_CORE_DRAIN_TIMEOUT", "100000")]).contains("drain_timeout"));
}

#[test]
fn unknown_file_keys_are_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("core.toml");
    std::fs::write(&file, "max_bdy_size = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let flags = Flags {
        config: Some(file),
        ..Flags::default()
    };
    let text = load_from(&flags, env(&[]), no_dot_env())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("unknown key `max_bdy_size`"), "{text}");
}

#[test]
fn reference_only_options_are_named_with_a_hint() {
    let found = reference_only_variables(env(&[
        ("KMS_HSM_PASSWORD", "x"),
        ("KMS_PORT", "9998"),
        ("KMS_CLEAR_DATABASE", "true"),
    ]));
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["KMS_HSM_PASSWORD", "KMS_CLEAR_DATABASE"]);
    assert!(found[0].1.contains("KMS_HSM_PIN"));
}
