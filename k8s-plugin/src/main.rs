//! kms-k8s-plugin binary: read and check the configuration, set up logging, serve until
//! SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use kms_k8s_plugin::config::{self, Flags};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match config::load(&flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kms-k8s-plugin: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = kms_common::log::init(config.json_logs);
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
    match runtime.block_on(kms_k8s_plugin::run(config, kms_common::signal::shutdown())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kms-k8s-plugin: {e}");
            ExitCode::FAILURE
        }
    }
}
