//! Configuration: precedence flags > environment > .env > file > defaults, unknown keys and
//! bad values refused before any port is bound (naming the key), secrets masked.

use anyhow::Result;
use kms_tests::ProxyCommand;

const VALID: [&str; 4] = [
    "--insecure-http",
    "--upstream",
    "unix:/tmp/kms-core-test.sock",
    "--print-config",
];

fn printed_user(stdout: &str) -> Option<String> {
    let table: toml::Table = stdout.parse().ok()?;
    table.get("default_username")?.as_str().map(str::to_owned)
}

#[test]
fn precedence_is_flags_then_env_then_dotenv_then_file_then_defaults() -> Result<()> {
    // (file, .env, env, flag) -> expected
    let cases = [
        (true, true, true, true, "flag_user"),
        (true, true, true, false, "env_user"),
        (true, true, false, false, "dotenv_user"),
        (true, false, false, false, "file_user"),
        (false, false, false, false, "admin"),
        (false, true, false, true, "flag_user"),
        (true, false, true, false, "env_user"),
    ];
    for (file, dotenv, env, flag, expected) in cases {
        let mut cmd = ProxyCommand::new().args(VALID);
        if file {
            let path = cmd.cwd().join("proxy.toml");
            std::fs::write(&path, "default_username = \"file_user\"\nport = 7000\n")?;
            cmd = cmd.env("KMS_PROXY_CONFIG", &path.display().to_string());
        }
        if dotenv {
            std::fs::write(cmd.cwd().join(".env"), "KMS_DEFAULT_USERNAME=dotenv_user\n")?;
        }
        if env {
            cmd = cmd.env("KMS_DEFAULT_USERNAME", "env_user");
        }
        if flag {
            cmd = cmd.args(["--default-username", "flag_user"]);
        }
        let (status, stdout, stderr) = cmd.output()?;
        assert!(status.success(), "{stderr}");
        assert_eq!(
            printed_user(&stdout).as_deref(),
            Some(expected),
            "case {file} {dotenv} {env} {flag}: {stdout}"
        );
        if file {
            assert!(stdout.contains("port = 7000"), "{stdout}");
        }
    }
    Ok(())
}

/// `--help` names each option's environment variable.
#[test]
fn help_names_the_environment_variables() -> Result<()> {
    let (status, stdout, _) = ProxyCommand::new().args(["--help"]).output()?;
    assert!(status.success());
    for env in [
        "[env: KMS_PROXY_CONFIG]",
        "[env: KMS_UPSTREAM]",
        "[env: KMS_TLS_CERT_FILE]",
        "[env: KMS_JWT_ISSUER_URI]",
        "[env: KMS_UPSTREAM_IDENTITY]",
    ] {
        assert!(stdout.contains(env), "{env} missing: {stdout}");
    }
    Ok(())
}

/// `KMS_PROXY_CONFIG` in `.env` names the file, as it would in the environment.
#[test]
fn the_config_file_may_be_named_in_dotenv() -> Result<()> {
    let cmd = ProxyCommand::new().args(VALID);
    let path = cmd.cwd().join("from-dotenv.toml");
    std::fs::write(&path, "default_username = \"dotenv_file_user\"\n")?;
    std::fs::write(
        cmd.cwd().join(".env"),
        format!("KMS_PROXY_CONFIG={}\n", path.display()),
    )?;
    let (status, stdout, stderr) = cmd.output()?;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        printed_user(&stdout).as_deref(),
        Some("dotenv_file_user"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn the_config_flag_reads_a_toml_file() -> Result<()> {
    let cmd = ProxyCommand::new();
    let path = cmd.cwd().join("p.toml");
    std::fs::write(
        &path,
        "default_username = \"toml\"\nmax_body_size = 2048\nlog_format = \"json\"\n",
    )?;
    let (status, stdout, stderr) = cmd
        .args(VALID)
        .args(["--config", &path.display().to_string()])
        .output()?;
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("max_body_size = 2048") && stdout.contains("log_format = \"json\""),
        "{stdout}"
    );
    assert_eq!(printed_user(&stdout).as_deref(), Some("toml"));
    Ok(())
}

#[test]
fn unknown_keys_and_bad_values_exit_before_binding_and_name_the_key() -> Result<()> {
    let holder = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = holder.local_addr()?.port().to_string();
    let serve = [
        "--insecure-http",
        "--hostname",
        "127.0.0.1",
        "--port",
        &port,
    ];
    let file_cases = [
        ("colour = \"blue\"\n", "colour"),
        ("max_body_size = \"big\"\n", "max_body_size"),
        ("idle_timeout = -1\n", "idle_timeout"),
        ("upstream = \"ftp://core\"\n", "upstream"),
        ("log_format = \"xml\"\n", "log_format"),
        ("admin_address = \"nowhere\"\n", "admin_address"),
        ("max_connections = 0\n", "max_connections"),
    ];
    for (content, key) in file_cases {
        let cmd = ProxyCommand::new();
        let path = cmd.cwd().join("bad.toml");
        let upstream = if key == "upstream" {
            ""
        } else {
            "upstream = \"unix:/tmp/x.sock\"\n"
        };
        std::fs::write(&path, format!("{upstream}{content}"))?;
        let (status, _, stderr) = cmd
            .args(serve)
            .args(["--config", &path.display().to_string()])
            .output()?;
        assert_eq!(status.code(), Some(2), "{content}: {stderr}");
        assert!(
            stderr.contains(key),
            "{content}: stderr does not name {key}: {stderr}"
        );
        // Had it tried to bind, the held port would have produced a bind error instead.
        assert!(
            !stderr.contains("cannot listen") && !stderr.contains("listening"),
            "{stderr}"
        );
    }
    let env_cases = [
        ("KMS_IDLE_TIMEOUT", "abc", "idle_timeout"),
        ("KMS_DEFAULT_USERNAME", " ", "default_username"),
        ("KMS_MAX_HEADER_SIZE", "12", "max_header_size"),
    ];
    for (name, value, key) in env_cases {
        let (status, _, stderr) = ProxyCommand::new()
            .args(serve)
            .env("KMS_UPSTREAM", "unix:/x")
            .env(name, value)
            .output()?;
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(key),
            "{name}={value}: stderr does not name {key}: {stderr}"
        );
    }
    let (status, _, stderr) = ProxyCommand::new()
        .args(serve)
        .args(["--upstream", "unix:/x", "--no-such-flag"])
        .output()?;
    assert!(!status.success());
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    let (status, _, stderr) = ProxyCommand::new()
        .args([
            "--insecure-http",
            "--upstream",
            "unix:/x",
            "--config",
            "/nonexistent/kms.toml",
        ])
        .output()?;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("/nonexistent/kms.toml"), "{stderr}");
    drop(holder);
    Ok(())
}

#[test]
fn print_config_masks_secrets() -> Result<()> {
    let (status, stdout, stderr) = ProxyCommand::new()
        .args(["--upstream", "unix:/x", "--insecure-http", "--print-config"])
        .env("KMS_HTTPS_P12_PASSWORD", "topsecret-p12")
        .output()?;
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("https_p12_password = \"***\""), "{stdout}");
    assert!(!stdout.contains("topsecret-p12") && !stderr.contains("topsecret-p12"));
    // Variables of other components sharing the KMS_ prefix are not this proxy's business.
    let (status, _, stderr) = ProxyCommand::new()
        .args(VALID)
        .env("KMS_DATABASE_URL", "postgres://x")
        .output()?;
    assert!(status.success(), "{stderr}");
    Ok(())
}

/// kms-core reads a TOML file (`--config`) under `.env`, environment and flags, refuses a
/// bad value naming its key and variable before it binds anything, and warns about an option
/// of the reference server it does not have.
#[test]
fn kms_core_configuration_file_env_and_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let socket = dir.path().join("core.sock");
    let file = dir.path().join("core.toml");
    std::fs::write(
        &file,
        format!(
            "socket = {:?}\nroot_data_path = {:?}\ndatabase_type = \"sqlite\"\ndev = true\nadmin_address = \"127.0.0.1:0\"\nlog_format = \"text\"\n",
            socket.display().to_string(),
            data.display().to_string()
        ),
    )?;
    let mut core = kms_tests::ProxyCommand::core()
        .env("KMS_HSM_PASSWORD", "1234")
        .args(["--config".as_ref(), file.as_os_str()])
        .spawn_as_is()?;
    assert!(socket.exists(), "the socket named in the file is served");
    assert!(
        data.join("kms.db").exists(),
        "root_data_path holds the database"
    );
    let logs = core.logs();
    assert!(
        logs.contains("KMS_HSM_PASSWORD") && logs.contains("KMS_HSM_PIN"),
        "a warning names the reference option and what to use: {logs}"
    );
    core.signal(nix::sys::signal::Signal::SIGTERM)?;
    core.wait_exit(std::time::Duration::from_secs(10))?;

    let other_socket = dir.path().join("never.sock");
    let (status, _, stderr) = kms_tests::ProxyCommand::core()
        .env("KMS_CORE_MAX_BODY_SIZE", "lots")
        .args([
            "--socket".as_ref(),
            other_socket.as_os_str(),
            "--dev".as_ref(),
        ])
        .output()?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("max_body_size") && stderr.contains("KMS_CORE_MAX_BODY_SIZE"),
        "{stderr}"
    );
    assert!(
        !other_socket.exists(),
        "nothing bound before the configuration is valid"
    );
    let (status, _, stderr) = kms_tests::ProxyCommand::core()
        .args(["--database-type", "mysql", "--dev"])
        .output()?;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("sqlite or postgresql"), "{stderr}");
    Ok(())
}
