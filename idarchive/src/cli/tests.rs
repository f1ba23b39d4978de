//! The command line as parsed, and the exit codes against a real Redis.

use clap::Parser;

use super::*;
use crate::model::{Cause, Change, Record, Redirect};
use stack::redis::Redis;

#[derive(Parser, Debug)]
struct Test {
    #[command(subcommand)]
    command: RedirectsCommand,
}

fn config(redis: &Redis) -> Settings {
    Settings {
        redis_url: redis.url(),
        key_prefix: "cli:".into(),
    }
}

fn parse(args: &[&str]) -> RedirectsCommand {
    Test::try_parse_from(std::iter::once("redirects").chain(args.iter().copied()))
        .unwrap()
        .command
}

#[test]
fn arguments_parse() {
    assert!(matches!(
        parse(&["set", "a", "b", "--temporary", "-r", "why"]),
        RedirectsCommand::Set { temporary: true, ref who, .. } if who.reason == "why"
    ));
    assert!(matches!(
        parse(&["list"]),
        RedirectsCommand::List { limit: 100, .. }
    ));
    assert!(matches!(
        parse(&["export"]),
        RedirectsCommand::Export { ref file, .. } if file.as_os_str() == "-"
    ));
    assert!(Test::try_parse_from(["redirects", "set", "a"]).is_err());
    assert!(matches!(
        parse(&["import", "--resume"]),
        RedirectsCommand::Import {
            resume: true,
            file: None,
            ..
        }
    ));
    assert!(Test::try_parse_from(["redirects", "import"]).is_err());
    assert!(Test::try_parse_from(["redirects", "import", "f.csv", "--resume"]).is_err());
    assert_eq!(by(Some("me".into())), "me");
}

#[test]
fn exit_codes() {
    let redis = Redis::new();
    let config = config(&redis);
    let run_args = |args: &[&str]| {
        run(
            Some(&config),
            RedirectsArgs {
                command: parse(args),
            },
        )
    };
    assert_eq!(run_args(&["set", "a", "b"]), ExitCode::SUCCESS);
    assert_eq!(run_args(&["set", "b", "a"]), ExitCode::from(1));
    assert_eq!(run_args(&["rm", "zzz"]), ExitCode::from(1));
    assert_eq!(run_args(&["show", "zzz"]), ExitCode::from(1));
    assert_eq!(run_args(&["show", "a"]), ExitCode::SUCCESS);
    assert_eq!(
        run(
            None,
            RedirectsArgs {
                command: parse(&["list"])
            }
        ),
        ExitCode::from(2)
    );

    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let good = dir.join("good.csv");
    std::fs::write(&good, "old,new\nc,d\n").unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "- old: e\n  new: f\n- old: d\n  new: c\n- old: q\n").unwrap();
    assert_eq!(
        run_args(&["import", good.to_str().unwrap()]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        run_args(&["import", bad.to_str().unwrap()]),
        ExitCode::from(1)
    );
    assert_eq!(run_args(&["import", "/nonexistent.csv"]), ExitCode::from(2));
    let out = dir.join("out.yaml");
    assert_eq!(
        run_args(&["export", out.to_str().unwrap()]),
        ExitCode::SUCCESS
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("- old: a\n  new: b\n"), "{text}");
    assert!(!dir.join("out.yaml.partial").exists());

    let mut dead = Redis::new();
    let dead_config = self::config(&dead);
    dead.kill();
    assert_eq!(
        run(
            Some(&dead_config),
            RedirectsArgs {
                command: parse(&["list"])
            }
        ),
        ExitCode::from(2)
    );
}

#[test]
fn descriptions_read_well() {
    let change = Change {
        id: "a".into(),
        before: None,
        after: Some(Record {
            redirect: Redirect::to("c", false),
            changed_at: String::new(),
            changed_by: String::new(),
            reason: String::new(),
        }),
        cause: Cause::Shortened { via: "b".into() },
        note: String::new(),
    };
    assert_eq!(
        describe(&change),
        "a → c (moved, 301/308); b had already moved there"
    );
}
