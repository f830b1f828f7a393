//! ckms binary: parse the command line, run the command, print the result or the error.

use std::process::ExitCode;

use ckms::commands::{self, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ckms: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(outcome) => {
            if json {
                println!("{}", outcome.json);
            } else {
                println!("{}", outcome.text);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                println!("{}", serde_json::json!({"error": error.to_string()}));
            }
            eprintln!("ckms: error: {error}");
            ExitCode::FAILURE
        }
    }
}
