//! `loadtest`: the benchmark of the design report against one or more IIIF targets, and `loadtest wrk …`, the
//! measuring tools of `loadtest/wrk/compare.sh`. Glue only: parse the command line, run, map the outcome to an
//! exit status (0 done, 1 check failed or run error, 2 bad usage).

use std::process::ExitCode;

use clap::Parser;

use loadtest::app::{self, Verdict};
use loadtest::cli::{Args, Config};

fn main() -> ExitCode {
    // `loadtest wrk …`: the tools of loadtest/wrk/compare.sh; anything else is a load test.
    if std::env::args().nth(1).as_deref() == Some("wrk") {
        let cli = loadtest::wrk_tool::WrkCli::parse_from(std::env::args().skip(1));
        return match loadtest::wrk_tool::run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("loadtest wrk: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let command = std::env::args()
        .map(|arg| shell_quote(&arg))
        .collect::<Vec<_>>()
        .join(" ");
    let config = match Config::from_args(Args::parse()) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                eprintln!("loadtest: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadtest: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(config, command)) {
        Ok(Verdict::Done) => ExitCode::SUCCESS,
        Ok(Verdict::CheckFailed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Quotes `arg` for a POSIX shell when it needs it, so the recorded command can be pasted back.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
