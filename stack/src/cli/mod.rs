//! The `stack` binary's command line ([`args`]) and subcommands ([`commands`]).

pub(crate) mod args;
pub(crate) mod commands;
