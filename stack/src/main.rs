//! `stack`: starts, describes and stops the local stack (see `stack --help`). Glue only: the
//! work is in the `stack` library and `cli::commands`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::args::{Cli, Command};
use cli::commands;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Up { detach, stack } => commands::up(&stack, detach),
        Command::Down { dir } => commands::down(&dir.absolute()),
        Command::Run { stack, command } => commands::run(&stack, &command),
        Command::Env { dir } => commands::env(&dir.absolute()),
        Command::Binaries => commands::binaries(),
        Command::Which { name } => commands::which(&name),
    }
}
