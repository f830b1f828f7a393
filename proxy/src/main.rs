//! kms-proxy binary: parse configuration, set up logging, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use kms_proxy::App;
use kms_proxy::config::{self, Config, Flags, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("KMS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kms_common::log::EscapedStderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let raw = match config::load(&flags) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("kms-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(address) = &flags.healthcheck {
        let address = if address.is_empty() {
            &raw.admin_address
        } else {
            address
        };
        return match address.parse() {
            Ok(address) if kms_proxy::admin::health_check(address) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("kms-proxy: --healthcheck {address}: {e}");
                ExitCode::from(2)
            }
        };
    }
    if flags.print_config {
        match toml::to_string_pretty(&raw) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("kms-proxy: cannot print the configuration: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let config = match Config::try_from(raw) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kms-proxy: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.print_config {
        return ExitCode::SUCCESS;
    }
    init_logging(config.log_format);
    // One crypto provider, aws-lc-rs, for TLS (rustls, reqwest) and JWT signatures.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a TLS crypto provider was already installed");
    }
    if jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    )
    .is_err()
    {
        tracing::debug!("a JWT crypto provider was already installed");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kms-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match App::bind(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("kms-proxy: {e}");
                return ExitCode::from(1);
            }
        };
        match app.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}
