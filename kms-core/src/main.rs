//! kms-core binary: parse flags, set up logging, serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use kms_core::App;
use kms_core::config::Flags;
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
    let filter = EnvFilter::try_from_env("KMS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kms_common::log::EscapedStderr);
    match flags.log_format.as_str() {
        "json" => builder.json().flatten_event(true).init(),
        "text" => builder.with_ansi(false).init(),
        other => {
            eprintln!(
                "kms-core: configuration error: invalid value for `log_format`: {other:?} (text or json)"
            );
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kms-core: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        if let Some(kms_core::config::CoreCommand::Rewrap { to }) = &flags.command {
            return match kms_core::rewrap(&flags, *to).await {
                Ok(moved) => {
                    println!(
                        "re-wrapped {moved} key(s) under the {} key-encryption key",
                        to.as_str()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kms-core rewrap: {e}");
                    ExitCode::from(1)
                }
            };
        }
        match App::bind(&flags).await {
            Ok(app) => {
                app.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kms-core: {e}");
                ExitCode::from(1)
            }
        }
    })
}
