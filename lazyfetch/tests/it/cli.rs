//! The `lazyfetch` binary against a cache filled from a real Garage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use stack::Garage;

use crate::support::{cache_config, content, masters_config, node};

/// The gateway's YAML file, with keys of the gateway's own that lazyfetch must ignore.
fn write_config(dir: &Path, root: &Path, garage: &Garage) -> PathBuf {
    let path = dir.join("gateway.yaml");
    let yaml = format!(
        r#"threads: 2
gateway:
  listen: 127.0.0.1:1
  backend: {{ anything: [1, 2] }}
  cache:
    root: {root}
    budget: 10MiB
    high_watermark: 90%
    low_watermark: 50%
  masters:
    s3:
      endpoint: {endpoint}
      region: garage
      force_path_style: true
      access_key_id: {key}
      secret_access_key_file: {dir}/secret
    rules:
      - match: '^(.+)$'
        bucket: {bucket}
        key: '${{1}}'
"#,
        root = root.display(),
        endpoint = garage.endpoint(),
        key = garage.access_key_id,
        dir = dir.display(),
        bucket = garage.bucket,
    );
    std::fs::write(&path, yaml).unwrap();
    std::fs::write(
        dir.join("secret"),
        format!("{}\n", garage.secret_access_key),
    )
    .unwrap();
    path
}

fn lazyfetch(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazyfetch"))
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn warm_stats_purge_and_prune_from_the_command_line() {
    let garage = Garage::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let config = write_config(dir.path(), &root, &garage);
    for (n, id) in ["a", "b", "c"].iter().enumerate() {
        garage.put(id, content(3 << 20, n as u8)).await;
    }

    // warm: from stdin, with a comment, a blank line and one identifier S3 does not have.
    let output = lazyfetch(
        &config,
        &["warm", "-"],
        Some("# list\na\n\nb\nc\nmissing\n"),
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("failed \"missing\": not in S3"), "{out}");
    assert!(out.contains("warmed 3 masters, 1 failed"), "{out}");

    // stats: 3 units of 3 MiB (+ sidecars) in a 10 MiB budget: above the 90% high watermark.
    let output = lazyfetch(&config, &["stats", "--json"], None);
    assert!(output.status.success(), "{}", text(&output));
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stats["units"], 3);
    assert_eq!(stats["masters"], 3);
    assert!(stats["bytes_below_high"].as_i64().unwrap() < 0, "{stats}");
    let output = lazyfetch(&config, &["stats"], None);
    assert!(text(&output).contains("ABOVE"), "{}", text(&output));

    // purge: prints what it removed; exit 1 when an identifier had nothing.
    let output = lazyfetch(&config, &["purge", "a"], None);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("\"a\": removed 2 files"), "{out}");
    let output = lazyfetch(&config, &["purge", "a", "b"], None);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("\"a\": nothing cached"), "{out}");
    assert!(out.contains("\"b\": removed 2 files"), "{out}");

    // prune: the dry run lists, the real run removes and writes the textfile metrics.
    for (n, id) in ["a", "b"].iter().enumerate() {
        garage.put(id, content(3 << 20, n as u8 + 10)).await;
    }
    let cache = cache_config(&root);
    let warm_node = node(&cache, &masters_config(&garage, None)).await;
    warm_node.fetch.ensure("a").await.unwrap();
    warm_node.fetch.ensure("b").await.unwrap();
    let output = lazyfetch(&config, &["prune", "--dry-run"], None);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("would remove \""), "{out}");
    assert_eq!(
        lazyfetch::stats(warm_node.fetch.layout(), &cache)
            .unwrap()
            .units,
        3
    );

    let metrics = dir.path().join("lazyfetch.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let output = lazyfetch(&config, &["prune", "--metrics-file", metrics_arg], None);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("removed 2 images"), "{out}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("\niiif_masters_prune_runs_total 1\n"),
        "{prom}"
    );
    let output = lazyfetch(
        &config,
        &["prune", "--metrics-file", metrics_arg, "--high", "99%"],
        None,
    );
    assert!(
        text(&output).contains("nothing to remove"),
        "{}",
        text(&output)
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("\niiif_masters_prune_runs_total 2\n"),
        "{prom}"
    );
    assert!(
        prom.contains("\niiif_masters_prune_freed_bytes 0\n"),
        "{prom}"
    );
}

#[test]
fn bad_configuration_is_reported_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "gateway:\n  cache: { root: rel, budget: 1GiB, low_watermark: 95% }\n  masters:\n    rules: [{ match: '(', bucket: b, key: k }]\n",
    )
    .unwrap();
    let output = lazyfetch(&config, &["stats"], None);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(
        out.contains("gateway.cache.root: must be an absolute path"),
        "{out}"
    );
    assert!(
        out.contains("gateway.cache.low_watermark: 95% must be below high_watermark (90%)"),
        "{out}"
    );
    assert!(
        out.contains("gateway.masters.rules[0].match: invalid regex"),
        "{out}"
    );

    let output = lazyfetch(&dir.path().join("absent.yaml"), &["stats"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("absent.yaml"), "{}", text(&output));
}
