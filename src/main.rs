use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wsclose::cli::Cli::parse();
    match wsclose::app::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "wsclose: {}",
                wsclose::report::escape::terminal(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
