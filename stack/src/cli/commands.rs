//! The subcommands: `up` (foreground or detached), `down`, `run`, `env`, `binaries`.

use std::path::Path;
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use nix::sys::signal::Signal;

use stack::error::log_tail;
use stack::stack::{Stack, StackSpec};
use stack::state::{Recorded, State};

use super::args::StackArgs;

/// How long `down` waits for the launcher to stop everything (gateways drain, Garage syncs).
const DOWN_WITHIN: Duration = Duration::from_secs(90);

/// The signals that stop a stack, delivered on a channel (a thread with a small Tokio
/// runtime waits for them), so a Ctrl-C never kills the launcher before it has stopped its
/// services in order.
fn stop_signals() -> Receiver<Signal> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for signals");
        runtime.block_on(async move {
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            loop {
                let got = tokio::select! {
                    _ = int.recv() => Signal::SIGINT,
                    _ = term.recv() => Signal::SIGTERM,
                    _ = hup.recv() => Signal::SIGHUP,
                };
                if send.send(got).is_err() {
                    break;
                }
            }
        });
    });
    receive
}

fn spec_or_exit(args: &StackArgs) -> Result<StackSpec, ExitCode> {
    args.spec().map_err(|problem| {
        eprintln!("stack: {problem}");
        ExitCode::from(2)
    })
}

fn start(spec: StackSpec) -> Result<Stack, ExitCode> {
    Stack::start(spec).map_err(|error| {
        eprintln!("stack: {error}");
        ExitCode::FAILURE
    })
}

/// The running stack recorded in `dir`, if its launcher still runs.
fn running(dir: &Path) -> Result<Option<State>, ExitCode> {
    match State::read(dir) {
        Ok(Some(state)) if state.launcher.is_running() => Ok(Some(state)),
        Ok(_) => Ok(None),
        Err(error) => {
            eprintln!("stack: {error}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `stack up`.
pub(crate) fn up(args: &StackArgs, detach: bool) -> ExitCode {
    let spec = match spec_or_exit(args) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    match running(&spec.dir) {
        Ok(Some(state)) => {
            eprintln!(
                "stack: already running in {} (pid {}); `stack down --dir {0}` stops it",
                spec.dir.display(),
                state.launcher.pid
            );
            print_summary(&state.env);
            return ExitCode::SUCCESS;
        }
        Ok(None) => {
            if let Ok(Some(stale)) = State::read(&spec.dir) {
                if stale.services.iter().any(Recorded::is_running) {
                    eprintln!(
                        "stack: the launcher of the previous stack in {} is gone but some of its \
                         services still run; `stack down --dir {0}` stops them",
                        spec.dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
            State::remove(&spec.dir);
        }
        Err(code) => return code,
    }
    if detach {
        detach_up(&spec.dir)
    } else {
        foreground_up(spec)
    }
}

/// Runs `stack up` (without --detach) in the background and waits until it is ready or gone.
fn detach_up(dir: &Path) -> ExitCode {
    let log = dir.join("log").join("stack.log");
    let opened = std::fs::create_dir_all(dir.join("log")).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
    });
    let out = match opened {
        Ok(out) => out,
        Err(error) => {
            eprintln!("stack: {}: {error}", log.display());
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--detach" && arg != "-d")
        .collect();
    let exe = std::env::current_exe().expect("the running binary");
    let spawned = {
        use std::os::unix::process::CommandExt;
        Process::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a log handle"))
            .stderr(out)
            // Its own process group: the terminal's Ctrl-C and hangup are not its business.
            .process_group(0)
            .spawn()
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("stack: cannot start the background launcher: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "stack: starting in the background (pid {}, log {})",
        child.id(),
        log.display()
    );
    loop {
        if let Ok(Some(state)) = State::read(dir) {
            if state.launcher.pid == child.id() {
                print_summary(&state.env);
                return ExitCode::SUCCESS;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "stack: the background launcher exited ({status}) before the stack was ready; \
                 the end of {}:\n{}",
                log.display(),
                log_tail(&log, 40)
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn foreground_up(spec: StackSpec) -> ExitCode {
    let signals = stop_signals();
    let dir = spec.dir.clone();
    let mut stack = match start(spec) {
        Ok(stack) => stack,
        Err(code) => return code,
    };
    let state = State {
        launcher: Recorded::now("stack", std::process::id()).expect("our own process"),
        env: stack.env(),
        services: stack
            .processes()
            .into_iter()
            .filter_map(|(service, pid)| Recorded::now(&service, pid))
            .collect(),
    };
    if let Err(error) = state.write(&dir) {
        eprintln!("stack: {error}");
        stack.stop();
        return ExitCode::FAILURE;
    }
    print_summary(&state.env);
    eprintln!(
        "stack: ready; Ctrl-C or `stack down --dir {}` stops it",
        dir.display()
    );
    let signal = signals.recv().unwrap_or(Signal::SIGTERM);
    eprintln!("stack: {signal}: stopping");
    stack.stop();
    State::remove(&dir);
    eprintln!("stack: stopped");
    ExitCode::SUCCESS
}

fn print_summary(env: &[(String, String)]) {
    for (name, value) in env {
        println!("{name}={value}");
    }
}

/// `stack down`.
pub(crate) fn down(dir: &Path) -> ExitCode {
    let state = match State::read(dir) {
        Ok(Some(state)) => state,
        Ok(None) => {
            eprintln!("stack: nothing running in {}", dir.display());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("stack: {error}");
            return ExitCode::FAILURE;
        }
    };
    if state.launcher.signal(Signal::SIGTERM) {
        eprintln!("stack: stopping the stack (pid {})", state.launcher.pid);
        if state.launcher.wait_gone(DOWN_WITHIN) {
            State::remove(dir);
            eprintln!("stack: stopped");
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "stack: the launcher did not stop within {}s; stopping its services directly",
            DOWN_WITHIN.as_secs()
        );
        state.launcher.signal(Signal::SIGKILL);
    } else {
        eprintln!("stack: the launcher is gone; stopping the services it left");
    }
    // The launcher died (or hung): stop what it recorded, gateways first.
    for service in &state.services {
        if service.signal(Signal::SIGTERM) && !service.wait_gone(Duration::from_secs(15)) {
            service.signal(Signal::SIGKILL);
        }
    }
    State::remove(dir);
    ExitCode::SUCCESS
}

/// `stack env`.
pub(crate) fn env(dir: &Path) -> ExitCode {
    match running(dir) {
        Ok(Some(state)) => {
            for (name, value) in &state.env {
                println!("export {name}={}", shell_quote(value));
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "stack: nothing running in {} (start it with `stack up --detach`)",
                dir.display()
            );
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

/// `stack run`.
pub(crate) fn run(args: &StackArgs, command: &[String]) -> ExitCode {
    let spec = match spec_or_exit(args) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let signals = stop_signals();
    let mut stack = match start(spec) {
        Ok(stack) => stack,
        Err(code) => return code,
    };
    let mut child = match Process::new(&command[0])
        .args(&command[1..])
        .envs(stack.env())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("stack: cannot run {}: {error}", command[0]);
            stack.stop();
            return ExitCode::from(127);
        }
    };
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        // A terminal's Ctrl-C reaches the command by itself; other signals are passed on.
        if let Ok(signal) = signals.try_recv() {
            if signal != Signal::SIGINT {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stack.stop();
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0) as u8,
        ),
    }
}

/// `stack binaries`.
pub(crate) fn binaries() -> ExitCode {
    for binary in stack::binaries::ALL {
        let path = binary.path();
        let found = if path.is_file() { "found" } else { "MISSING" };
        println!(
            "{:<13} {:<17} {} ({found})",
            binary.name,
            binary.env,
            path.display()
        );
    }
    ExitCode::SUCCESS
}

/// `stack which`.
pub(crate) fn which(name: &str) -> ExitCode {
    let Some(binary) = stack::binaries::named(name) else {
        let names: Vec<&str> = stack::binaries::ALL.iter().map(|b| b.name).collect();
        eprintln!(
            "stack: no program called {name:?}; one of {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    match binary.require() {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("stack: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `value` quoted for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
