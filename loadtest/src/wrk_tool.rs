//! `loadtest wrk …`: the measuring and reporting half of `loadtest/wrk/compare.sh`, which only
//! starts the stack and chooses the runs. `measure` runs wrk between two readings of the
//! servers' CPU time and appends the row; `fill` makes the hot-cache scenario's static copies;
//! `report` prints the Markdown table with the ratios ([`crate::wrk`]).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::cpu;
use crate::wrk::{self, Row, Settings};

/// Tools for loadtest/wrk/compare.sh: measure one wrk run, fill the static copies of the
/// hot-cache scenario, print the report.
#[derive(Debug, Parser)]
#[command(name = "loadtest wrk", version)]
pub struct WrkCli {
    /// What to do.
    #[command(subcommand)]
    pub command: WrkCommand,
}

/// The `loadtest wrk` subcommands.
#[derive(Debug, Subcommand)]
pub enum WrkCommand {
    /// Run COMMAND (a wrk run with -s loadtest/wrk/urls.lua), its output to --log, and append
    /// the row (requests/s, latency, errors, CPU per request of the front and of iipsrv) to
    /// --rows; print the row.
    Measure {
        /// The scenario (tiles-v2, thumbs-v3, hot-tiles, …).
        #[arg(long)]
        scenario: String,
        /// The target (baseline, gateway, cached, static).
        #[arg(long)]
        target: String,
        /// The rows file (one JSON object per line), appended to.
        #[arg(long)]
        rows: PathBuf,
        /// Where wrk's output goes.
        #[arg(long)]
        log: PathBuf,
        /// A front process whose CPU is counted (repeatable).
        #[arg(long = "front", value_name = "PID")]
        front: Vec<u32>,
        /// A front process and its direct children (nginx's master and workers; repeatable).
        #[arg(long = "front-tree", value_name = "PID")]
        front_tree: Vec<u32>,
        /// An iipsrv process whose CPU is counted (repeatable).
        #[arg(long = "iipsrv", value_name = "PID")]
        iipsrv: Vec<u32>,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// GET every distinct path of the LISTs once from --base, and save each body below --root
    /// at its decoded URL path (what nginx serves as static files).
    Fill {
        /// `http://HOST:PORT` of the server that renders them (the cached gateway).
        #[arg(long)]
        base: String,
        /// Put before every path (`/iiif/2/`).
        #[arg(long)]
        prefix: String,
        /// The static root.
        #[arg(long)]
        root: PathBuf,
        /// Path lists, one path per line.
        #[arg(required = true)]
        lists: Vec<PathBuf>,
    },
    /// Print the Markdown report of a rows file.
    Report {
        /// The rows file of `measure`.
        #[arg(long)]
        rows: PathBuf,
        /// wrk -t.
        #[arg(long)]
        threads: u32,
        /// wrk -c.
        #[arg(long)]
        connections: u32,
        /// Measured seconds per run.
        #[arg(long)]
        duration: u32,
        /// Warm-up seconds.
        #[arg(long)]
        warmup: u32,
        /// The seed of the lists.
        #[arg(long)]
        seed: u64,
    },
}

/// Runs one `loadtest wrk` command.
///
/// # Errors
/// A failed command, a missing RESULT line, an unreadable file, a failed GET.
pub fn run(cli: WrkCli) -> anyhow::Result<()> {
    match cli.command {
        WrkCommand::Measure {
            scenario,
            target,
            rows,
            log,
            front,
            front_tree,
            iipsrv,
            command,
        } => {
            let mut front_pids = front;
            for pid in front_tree {
                front_pids.push(pid);
                front_pids.extend(cpu::children_of(pid));
            }
            let row = measure(&scenario, &target, &log, &front_pids, &iipsrv, &command)?;
            let mut out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rows)
                .with_context(|| rows.display().to_string())?;
            writeln!(out, "{}", serde_json::to_string(&row)?)?;
            println!("{}", row.line());
            Ok(())
        }
        WrkCommand::Fill {
            base,
            prefix,
            root,
            lists,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let count = runtime.block_on(fill(&base, &prefix, &root, &lists))?;
            eprintln!("filled {count} derivatives");
            Ok(())
        }
        WrkCommand::Report {
            rows,
            threads,
            connections,
            duration,
            warmup,
            seed,
        } => {
            let text =
                std::fs::read_to_string(&rows).with_context(|| rows.display().to_string())?;
            let rows: Vec<Row> = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .context("a row of the rows file")?;
            let settings = Settings {
                threads,
                connections,
                duration_s: duration,
                warmup_s: warmup,
                seed,
            };
            print!("{}", wrk::report_markdown(&rows, &settings));
            Ok(())
        }
    }
}

/// CPU seconds of `pids` together (threads included; a process that has gone counts 0).
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|&pid| cpu::cpu_seconds_of(pid))
        .sum()
}

fn measure(
    scenario: &str,
    target: &str,
    log: &Path,
    front: &[u32],
    iipsrv: &[u32],
    command: &[String],
) -> anyhow::Result<Row> {
    let out = std::fs::File::create(log).with_context(|| log.display().to_string())?;
    let (front_before, iipsrv_before) = (cpu_of(front), cpu_of(iipsrv));
    let status = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .status()
        .with_context(|| format!("run {}", command[0]))?;
    let (front_after, iipsrv_after) = (cpu_of(front), cpu_of(iipsrv));
    if !status.success() {
        bail!(
            "{} failed ({status}); its output is in {}",
            command.join(" "),
            log.display()
        );
    }
    let output = std::fs::read_to_string(log)?;
    let result =
        wrk::parse_result(&output).map_err(|e| anyhow::anyhow!("{}: {e}", log.display()))?;
    Ok(Row::new(
        scenario,
        target,
        &result,
        front_after - front_before,
        iipsrv_after - iipsrv_before,
    ))
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connect to {authority}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn fill(base: &str, prefix: &str, root: &Path, lists: &[PathBuf]) -> anyhow::Result<usize> {
    let authority = base
        .strip_prefix("http://")
        .context("--base must be http://HOST:PORT")?
        .trim_end_matches('/');
    let mut seen = std::collections::HashSet::new();
    let mut sender = connect(authority).await?;
    for list in lists {
        let text = std::fs::read_to_string(list).with_context(|| list.display().to_string())?;
        for path in text.lines().map(str::trim).filter(|p| !p.is_empty()) {
            if !seen.insert(path.to_owned()) {
                continue;
            }
            let uri = format!("{prefix}{path}");
            if sender.ready().await.is_err() {
                // The server closed the kept-alive connection: open another.
                sender = connect(authority).await?;
            }
            let request = hyper::Request::get(&uri)
                .header(hyper::header::HOST, authority)
                .body(Empty::<Bytes>::new())?;
            let response = sender
                .send_request(request)
                .await
                .with_context(|| format!("GET {base}{uri}"))?;
            if response.status() != hyper::StatusCode::OK {
                bail!("GET {base}{uri} answered {}", response.status());
            }
            let body = response.into_body().collect().await?.to_bytes();
            let file = root.join(wrk::static_file(prefix, path));
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            }
            std::fs::write(&file, &body).with_context(|| file.display().to_string())?;
        }
    }
    Ok(seen.len())
}
