//! nginx under a prefix of its own (no root-owned paths), in the foreground so the stack owns
//! its master process: the measured baseline in front of iipsrv (`nginx/iipsrv-baseline.conf`),
//! static files (`nginx/static-files.conf`, the hot-cache anchor), or the public front of
//! several gateways (`nginx/gateway-front.conf`). The files live in `nginx/` as the documented
//! configurations; this module only fills in their `@…@` placeholders. Ready when
//! `/nginx-ping` answers 200.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::binaries::NGINX;
use crate::error::Error;
use crate::ports;
use crate::probe;
use crate::process::Process;

const BASELINE_CONF: &str = include_str!("../../nginx/iipsrv-baseline.conf");
const STATIC_CONF: &str = include_str!("../../nginx/static-files.conf");
const FRONT_CONF: &str = include_str!("../../nginx/gateway-front.conf");
const READY_WITHIN: Duration = Duration::from_secs(10);

/// What nginx serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The nginx → iipsrv FastCGI baseline, in front of the stack's iipsrv processes (which
    /// need `URI_MAP='iiif=>IIIF'`).
    Baseline,
    /// The files below this directory, at their paths.
    Static(PathBuf),
    /// The public front of the gateways whose public listeners are the backends, answering
    /// for `server_name` only.
    Front {
        /// The host name it answers for.
        server_name: String,
        /// That host as clients write it in URLs (`images.example.org`, `localhost:8080`):
        /// what the gateways put in ids.
        public_host: String,
    },
}

/// One nginx.
#[derive(Debug, Clone)]
pub struct NginxSpec {
    /// Its name in the stack (`baseline`, `static`).
    pub name: String,
    /// Its prefix: `conf/`, `logs/`, `run/`, `tmp/`.
    pub prefix: PathBuf,
    /// A fixed port; a free one when `None`.
    pub port: Option<u16>,
    /// What it serves.
    pub site: Site,
}

/// A running nginx master (and its workers), stopped with SIGQUIT (graceful).
#[derive(Debug)]
pub struct Nginx {
    name: String,
    port: u16,
    process: Process,
}

impl Nginx {
    /// Writes its config and starts it; `backends` are the iipsrv addresses of a baseline, or
    /// the gateways' public addresses of a front.
    ///
    /// # Errors
    /// A missing binary, a taken port, or no answer within 10 s (quoting its error log).
    pub fn start(spec: &NginxSpec, backends: &[String]) -> Result<Nginx, Error> {
        if spec.port.is_some() {
            return Nginx::start_once(spec, backends);
        }
        ports::retry_on_collision(|| Nginx::start_once(spec, backends))
    }

    fn start_once(spec: &NginxSpec, backends: &[String]) -> Result<Nginx, Error> {
        let binary = NGINX.require()?;
        for sub in ["conf", "logs", "run", "tmp"] {
            let dir = spec.prefix.join(sub);
            std::fs::create_dir_all(&dir).map_err(Error::io(dir))?;
        }
        let port = ports::fixed_or_free(spec.port);
        ports::check_free(&spec.name, port)?;
        let conf = render(&spec.site, port, backends)
            .map_err(|message| Error::setup(&spec.name, message))?;
        let conf_path = spec.prefix.join("conf/nginx.conf");
        std::fs::write(&conf_path, conf).map_err(Error::io(&conf_path))?;
        let mut prefix = spec.prefix.display().to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let mut command = Command::new(binary);
        command.args([
            "-p",
            &prefix,
            "-e",
            "logs/error.log",
            "-c",
            "conf/nginx.conf",
        ]);
        command.args(["-g", "daemon off;"]);
        let mut process = Process::spawn(
            &spec.name,
            &mut command,
            &spec.prefix.join("logs/error.log"),
            Signal::SIGQUIT,
            Duration::from_secs(15),
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        process.wait_ready(&addr.to_string(), READY_WITHIN, || {
            probe::http_status_is(addr, "/nginx-ping", 200)
        })?;
        Ok(Nginx {
            name: spec.name.clone(),
            port,
            process,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The master's process id (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its error log.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// SIGQUIT (graceful), then waits.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The config for `site` on `port`.
fn render(site: &Site, port: u16, backends: &[String]) -> Result<String, String> {
    let listen = format!("127.0.0.1:{port}");
    let text = match site {
        Site::Baseline => BASELINE_CONF.replace("@LISTEN@", &listen).replace(
            "@IIPSRV_SERVERS@",
            &upstream_servers(backends, "iipsrv processes")?,
        ),
        Site::Front {
            server_name,
            public_host,
        } => {
            if !is_server_name(server_name) {
                return Err(format!("{server_name:?} is not a host name"));
            }
            let host_ok = public_host
                .split_once(':')
                .map_or(is_server_name(public_host), |(name, port)| {
                    is_server_name(name) && port.parse::<u16>().is_ok()
                });
            if !host_ok {
                return Err(format!("{public_host:?} is not HOST or HOST:PORT"));
            }
            FRONT_CONF
                .replace("@LISTEN@", &listen)
                .replace("@SERVER_NAME@", server_name)
                .replace("@PUBLIC_HOST@", public_host)
                .replace(
                    "@GATEWAY_SERVERS@",
                    &upstream_servers(backends, "gateways")?,
                )
        }
        Site::Static(root) => STATIC_CONF
            .replace("@LISTEN@", &listen)
            .replace("@STATIC_ROOT@", &root.display().to_string()),
    };
    // The comments mention the placeholders; only directives must be filled in.
    let left: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains('@'))
        .collect();
    if left.is_empty() {
        Ok(text)
    } else {
        Err(format!(
            "unfilled placeholders in the nginx config: {left:?}"
        ))
    }
}

/// `server A; server B;` for an upstream block.
fn upstream_servers(backends: &[String], what: &str) -> Result<String, String> {
    if backends.is_empty() {
        return Err(format!("no {what} to send requests to"));
    }
    let servers: Vec<String> = backends
        .iter()
        .map(|address| format!("server {address};"))
        .collect();
    Ok(servers.join(" "))
}

/// A name nginx's `server_name` takes as one exact host (no spaces, wildcards or regexes).
fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_lists_every_backend() {
        let conf = render(
            &Site::Baseline,
            8088,
            &["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
        )
        .unwrap();
        assert!(conf.contains("listen 127.0.0.1:8088;"), "{conf}");
        assert!(
            conf.contains("server 127.0.0.1:9001; server 127.0.0.1:9002;"),
            "{conf}"
        );
        assert!(render(&Site::Baseline, 1, &[]).is_err());
    }

    #[test]
    fn the_front_serves_one_host_over_every_gateway() {
        let site = Site::Front {
            server_name: "images.example.org".into(),
            public_host: "images.example.org:8443".into(),
        };
        let conf = render(
            &site,
            8080,
            &["127.0.0.1:7001".into(), "127.0.0.1:7002".into()],
        )
        .unwrap();
        assert!(conf.contains("server_name images.example.org;"), "{conf}");
        assert!(
            conf.contains("\"$http_x_forwarded_host, images.example.org:8443\""),
            "{conf}"
        );
        assert!(
            conf.contains("server 127.0.0.1:7001; server 127.0.0.1:7002;"),
            "{conf}"
        );
        assert!(render(&site, 1, &[]).is_err());
        for (server_name, public_host) in [
            ("a.example; include /etc/passwd", "a.example"),
            ("a.example", "a.example\"; deny all"),
            ("a.example", "a.example:http"),
        ] {
            let bad = Site::Front {
                server_name: server_name.into(),
                public_host: public_host.into(),
            };
            assert!(render(&bad, 1, &["127.0.0.1:7001".into()]).is_err());
        }
    }

    #[test]
    fn static_files_from_a_root() {
        let conf = render(&Site::Static("/srv/copies".into()), 8089, &[]).unwrap();
        assert!(conf.contains("root /srv/copies;"), "{conf}");
    }
}
