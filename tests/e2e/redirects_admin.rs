//! The write side of the ID archive end to end: the real `iiif-gateway redirects …` binary and
//! the admin HTTP API against a real redis-server on a free port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gateway::config::{RawBackend, RawGatewayConfig, RawRedirects};
use serde_json::{json, Value};

use crate::support::{client, configure, free_port, scratch_dir, Redis, Stack, StackOptions};

const TOKEN: &str = "e2e-admin-token-0123456789";

fn gateway_bin() -> PathBuf {
    stack::binaries::GATEWAY
        .require()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A configuration file the CLI accepts, with `redirects` as `gateway.redirects`, written by
/// the launcher from the gateway's config types.
fn config(dir: &Path, redirects: Option<RawRedirects>) -> PathBuf {
    let mut raw = RawGatewayConfig::new(
        "127.0.0.1:1".into(),
        "127.0.0.1:2".into(),
        RawBackend::new(vec!["127.0.0.1:3".into()]),
    );
    raw.redirects = redirects;
    let path = dir.join(format!("gateway-{}.yaml", free_port()));
    std::fs::write(&path, stack::gateway::standalone_yaml(&raw)).unwrap();
    path
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(gateway_bin())
        .arg("-c")
        .arg(config)
        .arg("redirects")
        .args(args)
        .env("USER", "e2e-user")
        .env_remove("SUDO_USER")
        .output()
        .expect("the gateway binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_cli_edits_imports_and_exports() {
    let redis = Redis::new();
    let dir = scratch_dir();
    let conf = config(
        &dir,
        Some(RawRedirects {
            key_prefix: "e2e:".into(),
            ..RawRedirects::new(redis.url())
        }),
    );

    let out = cli(&conf, &["set", "old/1", "new-1", "--reason", "merged"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "old/1 → new-1 (moved, 301/308)\n",
        "{}",
        text(&out.stderr)
    );
    // A chain collapses, and says so.
    let out = cli(&conf, &["set", "new-1", "newest", "--temporary"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("old/1 → newest (temporary, 302/307); chain collapse"));
    // A loop is refused with exit code 1.
    let out = cli(&conf, &["set", "newest", "old/1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("loop"), "{}", text(&out.stderr));

    let out = cli(&conf, &["show", "old/1"]);
    assert!(out.status.success());
    let shown = text(&out.stdout);
    assert!(shown.starts_with("old/1 → newest\n"), "{shown}");
    assert!(shown.contains("by e2e-user"), "{shown}");
    assert!(shown.contains("history, newest first:"), "{shown}");
    assert_eq!(cli(&conf, &["show", "unknown"]).status.code(), Some(1));

    // An import with bad rows: every one named by line, nothing written.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "old,new,kind,reason\na,b,moved,\nnewest,old/1,moved,\nc,,sideways,\nd,d,,\n",
    )
    .unwrap();
    let out = cli(&conf, &["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for line in ["line 3:", "line 4:", "line 5:"] {
        assert!(stderr.contains(line), "{line} missing in {stderr}");
    }
    assert!(stderr.contains("3 bad rows"), "{stderr}");
    assert!(!stderr.contains("line 2:"), "{stderr}");
    let out = cli(&conf, &["list"]);
    assert_eq!(text(&out.stdout).lines().count(), 2, "nothing was imported");

    // A dry run, then the real thing.
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "- {old: a, new: b}\n- {old: b, new: c, reason: renamed}\n- {old: g, kind: gone}\n",
    )
    .unwrap();
    let out = cli(&conf, &["import", "--dry-run", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("would change a → c"), "{stdout}");
    assert!(stdout.contains("dry run, nothing written"), "{stdout}");
    assert_eq!(text(&cli(&conf, &["list"]).stdout).lines().count(), 2);
    let out = cli(&conf, &["import", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .starts_with("3 rows: 3 added, 0 changed, 0 unchanged; 1 chains collapsed"),
        "{}",
        text(&out.stdout)
    );

    let out = cli(&conf, &["list", "--prefix", "old"]);
    assert_eq!(text(&out.stdout), "old/1\ttemporary\tnewest\n");
    let out = cli(&conf, &["list", "--limit", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 5);
    let out = cli(&conf, &["list", "--limit", "2"]);
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert!(text(&out.stderr).contains("--limit 0 lists all"));

    // Export round trip through standard output and a file.
    let out = cli(&conf, &["export"]);
    assert!(out.status.success());
    let exported = text(&out.stdout);
    assert_eq!(
        exported,
        "old,new,kind,reason\na,c,moved,\nb,c,moved,renamed\ng,,gone,\nnew-1,newest,temporary,\nold/1,newest,temporary,merged\n"
    );
    let file = dir.join("export.csv");
    assert!(cli(&conf, &["export", file.to_str().unwrap()])
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
    let out = cli(&conf, &["import", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("0 added, 0 changed, 5 unchanged"),
        "{}",
        text(&out.stdout)
    );

    let out = cli(&conf, &["gone", "c", "-r", "withdrawn"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 3, "c, a and b are gone");
    assert!(cli(&conf, &["rm", "g"]).status.success());
    assert_eq!(cli(&conf, &["rm", "g"]).status.code(), Some(1));
}

#[test]
fn setup_problems_are_exit_code_2_and_the_server_flags_still_work() {
    let redis = Redis::new();
    let dir = scratch_dir();
    let without = config(&dir, None);
    let out = cli(&without, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("gateway.redirects"));

    let dead = config(&dir, Some(RawRedirects::new("redis://127.0.0.1:1/".into())));
    let out = cli(&dead, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach redis"),
        "{}",
        text(&out.stderr)
    );

    let out = cli(&dir.join("missing.yaml"), &["list"]);
    assert_eq!(out.status.code(), Some(2));

    // No subcommand: the server's own flags, as before.
    let valid = config(&dir, Some(RawRedirects::new(redis.url())));
    let out = Command::new(gateway_bin())
        .args(["-c", valid.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("is valid"));
}

/// The admin API through the real admin listener.
#[tokio::test]
async fn the_admin_api_on_the_admin_listener() {
    let redis = Redis::new();
    let url = redis.url();
    let stack = Stack::start_with(StackOptions {
        configure: configure(move |raw, _| {
            raw.redirects = Some(RawRedirects {
                key_prefix: "api:".into(),
                ..RawRedirects::new(url.clone())
            });
            raw.admin.token = Some(TOKEN.into());
        }),
        ..Default::default()
    });
    let http = client();
    let url = stack.admin_url("/admin/redirects/old%2F7");

    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401, "{}", stack.gateway_log());
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"iiif-gateway admin\""
    );

    let response = http
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"target": "astronaut", "reason": "e2e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["id"].clone(), body["target"].clone()),
        (json!("old/7"), json!("astronaut"))
    );

    let response = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["history"][0]["reason"], "e2e");

    let response = http
        .post(stack.admin_url("/admin/redirects/import"))
        .bearer_auth(TOKEN)
        .json(&json!([{"old": "astronaut", "new": "old/7"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("loop"));

    let response = http.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = http.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // The public listener knows nothing of it.
    let public = http
        .get(stack.url("/admin/redirects/old%2F7"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}
