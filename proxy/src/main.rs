//! kms-proxy binary: parse configuration, set up logging, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use kms_proxy::App;
use kms_proxy::config::{self, Config, LogFormat};

fn init_logging(format: LogFormat) -> kms_common::log::LogGuard {
    kms_common::log::init(matches!(format, LogFormat::Json))
}

fn main() -> ExitCode {
    let flags = config::parse_flags();
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
    let _log = init_logging(config.log_format);
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
                // Once, on the log (stderr); 2 when a file or setting must change, 1 otherwise.
                tracing::error!(error = %e, "cannot start");
                return ExitCode::from(e.exit_code());
            }
        };
        match app.run(kms_common::signal::shutdown()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}
