//! The `stack` binary's command line ([`args`]) and subcommands ([`commands`]).

pub mod args;
pub mod commands;
