//! kms-core binary: read and validate the configuration, set up logging, serve until
//! SIGTERM/SIGINT (or run a maintenance command).

use std::process::ExitCode;

use clap::Parser;
use kms_core::App;
use kms_core::config::{CoreCommand, Flags};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match kms_core::config::load(&flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kms-core: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = kms_common::log::init(config.log_format == "json");
    for (variable, hint) in kms_core::config::reference_only_variables(std::env::vars()) {
        tracing::warn!(
            variable,
            hint,
            "this reference KMS option has no effect on kms-core"
        );
    }
    // One crypto provider, aws-lc-rs, for TLS (rustls, reqwest fetching CRLs).
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a TLS crypto provider was already installed");
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
        if let Some(CoreCommand::Rewrap { to }) = &flags.command {
            return match kms_core::rewrap(&config, *to).await {
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
        match App::bind(&config).await {
            Ok(app) => {
                app.run(kms_common::signal::shutdown()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kms-core: {e}");
                ExitCode::from(1)
            }
        }
    })
}
