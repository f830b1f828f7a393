//! kms-k8s-plugin binary: read and check the configuration, set up logging, serve until
//! SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use kms_k8s_plugin::config::{self, Flags};
use tracing_subscriber::EnvFilter;

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
    let config = match config::load(&flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kms-k8s-plugin: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("KMS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kms_common::log::EscapedStderr);
    if config.json_logs {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(false).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kms-k8s-plugin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kms_k8s_plugin::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kms-k8s-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}
