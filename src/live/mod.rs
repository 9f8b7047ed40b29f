//! Live capture on a proxy host: `wsclose live -i IFACE` prints every close frame, FIN, RST and
//! diagnosis the moment it is seen, serves Prometheus metrics, and ends with the report of
//! `analyze`. `wsclose interfaces` lists what can be captured on.
//!
//! [`monitor`] is the pipeline without the capture (built in every build and tested over capture
//! files); the libpcap loop, signals and the metrics server need `--features live`.

pub mod monitor;

#[cfg(feature = "live")]
mod metrics;
#[cfg(feature = "live")]
mod runner;

#[cfg(feature = "live")]
pub use runner::{interfaces, run};

/// What `live` and `interfaces` say in a build without libpcap.
pub const NOT_BUILT: &str = "live capture is not in this build: apt-get install libpcap-dev; \
                             cargo build --release --features live";

#[cfg(not(feature = "live"))]
pub fn run(_args: &crate::cli::LiveArgs) -> anyhow::Result<std::process::ExitCode> {
    eprintln!("wsclose: {NOT_BUILT}");
    Ok(std::process::ExitCode::FAILURE)
}

#[cfg(not(feature = "live"))]
pub fn interfaces() -> anyhow::Result<std::process::ExitCode> {
    eprintln!("wsclose: {NOT_BUILT}");
    Ok(std::process::ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn the_subcommands_exist_in_every_build() {
        let cli =
            Cli::try_parse_from(["wsclose", "live", "-i", "lo", "--format", "jsonl"]).unwrap();
        assert!(
            matches!(cli.command, Command::Live(ref a) if a.interface.as_deref() == Some("lo"))
        );
        let cli = Cli::try_parse_from(["wsclose", "interfaces"]).unwrap();
        assert!(matches!(cli.command, Command::Interfaces));
        assert!(super::NOT_BUILT.contains("apt-get install libpcap-dev"));
        assert!(super::NOT_BUILT.contains("cargo build --release --features live"));
    }

    #[cfg(not(feature = "live"))]
    #[test]
    fn without_libpcap_they_say_how_to_get_it_and_fail() {
        let Command::Live(args) = Cli::try_parse_from(["wsclose", "live"]).unwrap().command else {
            panic!("not live");
        };
        assert_eq!(super::run(&args).unwrap(), std::process::ExitCode::FAILURE);
        assert_eq!(
            super::interfaces().unwrap(),
            std::process::ExitCode::FAILURE
        );
    }
}
