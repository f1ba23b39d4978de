//! A whole stack from one [`StackSpec`]: Garage (and its uploads), Redis, the iipsrv pool,
//! nginx and the gateways, started in that order (each needs the ones before), stopped in the
//! reverse order (the gateways first, so they stop sending requests before their backends
//! go), and described by environment variables for scripts ([`Stack::env`]).

use std::path::{Path, PathBuf};

use lazyfetch::config::{MastersConfig, RuleConfig, S3Config};

use crate::error::Error;
use crate::garage::{self, Garage, GarageSpec};
use crate::gateway::{Gateway, GatewaySpec, Wiring};
use crate::iipsrv::{IipsrvPool, IipsrvSpec};
use crate::nginx::{Nginx, NginxSpec};
use crate::redis::{Redis, RedisSpec};

/// Where the gateways' iipsrv processes come from.
#[derive(Debug, Clone)]
pub enum Backends {
    /// Started by the stack.
    Start(IipsrvSpec),
    /// Already running at these addresses (with the given `MAX_CVT` and `JPEG_QUALITY`).
    Existing {
        /// `HOST:PORT` of each process.
        addresses: Vec<String>,
        /// Their `MAX_CVT`.
        max_cvt: u32,
        /// Their `JPEG_QUALITY`.
        jpeg_quality: u8,
    },
}

/// Garage and what to upload into its bucket.
#[derive(Debug, Clone)]
pub struct GarageSetup {
    /// The server.
    pub spec: GarageSpec,
    /// Files and directories uploaded when new or changed (see [`Garage::upload_new`]).
    pub upload: Vec<PathBuf>,
}

/// Everything a stack runs.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The state directory: `log/`, `run/`, the gateways' configs, `admin-token`.
    pub dir: PathBuf,
    /// The iipsrv processes.
    pub backends: Backends,
    /// The ID archive's Redis.
    pub redis: Option<RedisSpec>,
    /// The S3 store of the masters.
    pub garage: Option<GarageSetup>,
    /// nginx instances (the baseline uses the same iipsrv processes as the gateways).
    pub nginx: Vec<NginxSpec>,
    /// Gateways, each in front of the same iipsrv processes.
    pub gateways: Vec<GatewaySpec>,
}

/// A running stack. Dropping it kills whatever still runs; [`Stack::stop`] stops gracefully.
// Fields drop in declaration order: the reverse of the start order.
#[derive(Debug)]
pub struct Stack {
    gateways: Vec<Gateway>,
    nginx: Vec<Nginx>,
    iipsrv: Option<IipsrvPool>,
    redis: Option<Redis>,
    garage: Option<Garage>,
    backends: Vec<String>,
    dir: PathBuf,
    admin_token_file: PathBuf,
}

impl Stack {
    /// Starts every service of `spec` and waits until each answers. On an error, what was
    /// already started is stopped again.
    ///
    /// # Errors
    /// The first service that fails, with its log.
    pub fn start(spec: StackSpec) -> Result<Stack, Error> {
        for sub in ["log", "run"] {
            let dir = spec.dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(Error::io(dir))?;
        }
        let mut stack = Stack {
            gateways: Vec::new(),
            nginx: Vec::new(),
            iipsrv: None,
            redis: None,
            garage: None,
            backends: Vec::new(),
            admin_token_file: admin_token(&spec.dir)?,
            dir: spec.dir.clone(),
        };
        if let Some(setup) = &spec.garage {
            let garage = Garage::launch(setup.spec.clone())?;
            let uploaded = garage.upload_new(&setup.upload)?;
            if !setup.upload.is_empty() {
                eprintln!(
                    "stack: bucket {}: {uploaded} new or changed file(s) uploaded",
                    garage.bucket
                );
            }
            stack.garage = Some(garage);
        }
        if let Some(redis) = &spec.redis {
            stack.redis = Some(Redis::start(redis.clone())?);
        }
        let (max_cvt, jpeg_quality) = match &spec.backends {
            Backends::Start(iipsrv) => {
                let pool = IipsrvPool::start(iipsrv.clone())?;
                stack.backends = pool.addresses();
                stack.iipsrv = Some(pool);
                (iipsrv.max_cvt, iipsrv.jpeg_quality)
            }
            Backends::Existing {
                addresses,
                max_cvt,
                jpeg_quality,
            } => {
                for address in addresses {
                    check_running_iipsrv(address)?;
                }
                stack.backends = addresses.clone();
                (*max_cvt, *jpeg_quality)
            }
        };
        for nginx in &spec.nginx {
            stack.nginx.push(Nginx::start(nginx, &stack.backends)?);
        }
        let wiring = Wiring {
            backends: stack.backends.clone(),
            max_cvt,
            jpeg_quality,
            redis_url: stack.redis.as_ref().map(Redis::url),
            masters: stack.garage.as_ref().map(masters_from),
            admin_token_file: Some(stack.admin_token_file.clone()),
        };
        for gateway in &spec.gateways {
            stack
                .gateways
                .push(Gateway::start(gateway, &wiring, &spec.dir)?);
        }
        Ok(stack)
    }

    /// Stops every service gracefully, in the reverse order of the start.
    pub fn stop(&mut self) {
        for gateway in self.gateways.iter_mut().rev() {
            gateway.stop();
        }
        for nginx in self.nginx.iter_mut().rev() {
            nginx.stop();
        }
        if let Some(pool) = &mut self.iipsrv {
            pool.stop();
        }
        if let Some(redis) = &mut self.redis {
            redis.stop();
        }
        if let Some(garage) = &self.garage {
            garage.shut_down();
        }
    }

    /// The gateway called `name`.
    pub fn gateway(&self, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.name() == name)
    }

    /// The iipsrv pool, when the stack started one.
    pub fn iipsrv(&self) -> Option<&IipsrvPool> {
        self.iipsrv.as_ref()
    }

    /// The Redis.
    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// The Garage.
    pub fn garage(&self) -> Option<&Garage> {
        self.garage.as_ref()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every service process that runs now: `(service, pid)`.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut all = Vec::new();
        for gateway in &self.gateways {
            all.push((gateway.name().to_owned(), gateway.pid()));
        }
        for nginx in &self.nginx {
            all.push((nginx.name().to_owned(), nginx.pid()));
        }
        for process in self.iipsrv.iter().flat_map(IipsrvPool::processes) {
            if let Some(pid) = process.pid() {
                all.push((format!("iipsrv :{}", process.port), pid));
            }
        }
        if let Some(redis) = &self.redis {
            all.push(("redis".to_owned(), redis.pid()));
        }
        if let Some(pid) = self.garage.as_ref().and_then(Garage::pid) {
            all.push(("garage".to_owned(), pid));
        }
        all
    }

    /// The variables that describe the stack (`stack env`, and the command of `stack run`):
    ///
    /// - `STACK_DIR`, `STACK_LOG_DIR`, `STACK_ADMIN_TOKEN_FILE`;
    /// - `STACK_IIPSRV_ADDRESSES` (space-separated `127.0.0.1:PORT`), `STACK_IIPSRV_PORTS`,
    ///   `STACK_IIPSRV_PIDS` (at start; `run/iipsrv-PORT.pid` follows restarts);
    /// - `STACK_REDIS_URL`;
    /// - `STACK_S3_ENDPOINT`, `STACK_S3_BUCKET`, `STACK_S3_ACCESS_KEY_ID`, `STACK_S3_SECRET_FILE`;
    /// - per gateway `NAME` (upper case): `STACK_NAME_URL`, `STACK_NAME_ADMIN_URL`,
    ///   `STACK_NAME_CONFIG`, `STACK_NAME_LOG`, `STACK_NAME_PID`;
    /// - per nginx `NAME`: `STACK_NAME_URL`, `STACK_NAME_LOG`, `STACK_NAME_PID` (the master).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("STACK_DIR".to_owned(), self.dir.display().to_string()),
            (
                "STACK_LOG_DIR".to_owned(),
                self.dir.join("log").display().to_string(),
            ),
            (
                "STACK_ADMIN_TOKEN_FILE".to_owned(),
                self.admin_token_file.display().to_string(),
            ),
            ("STACK_IIPSRV_ADDRESSES".to_owned(), self.backends.join(" ")),
        ];
        if let Some(pool) = &self.iipsrv {
            let ports: Vec<String> = pool
                .processes()
                .iter()
                .map(|p| p.port.to_string())
                .collect();
            let pids: Vec<String> = pool
                .processes()
                .iter()
                .filter_map(|p| p.pid())
                .map(|pid| pid.to_string())
                .collect();
            env.push(("STACK_IIPSRV_PORTS".to_owned(), ports.join(" ")));
            env.push(("STACK_IIPSRV_PIDS".to_owned(), pids.join(" ")));
        }
        if let Some(redis) = &self.redis {
            env.push(("STACK_REDIS_URL".to_owned(), redis.url()));
        }
        if let Some(garage) = &self.garage {
            env.push(("STACK_S3_ENDPOINT".to_owned(), garage.endpoint()));
            env.push(("STACK_S3_BUCKET".to_owned(), garage.bucket.clone()));
            env.push((
                "STACK_S3_ACCESS_KEY_ID".to_owned(),
                garage.access_key_id.clone(),
            ));
            env.push((
                "STACK_S3_SECRET_FILE".to_owned(),
                garage.secret_file().display().to_string(),
            ));
        }
        for gateway in &self.gateways {
            let name = variable_name(gateway.name());
            let files = gateway.files();
            env.push((format!("STACK_{name}_URL"), gateway.url("")));
            env.push((format!("STACK_{name}_ADMIN_URL"), gateway.admin_url("")));
            env.push((
                format!("STACK_{name}_CONFIG"),
                files.config.display().to_string(),
            ));
            env.push((format!("STACK_{name}_LOG"), files.log.display().to_string()));
            env.push((format!("STACK_{name}_PID"), gateway.pid().to_string()));
        }
        for nginx in &self.nginx {
            let name = variable_name(nginx.name());
            env.push((format!("STACK_{name}_URL"), nginx.url()));
            env.push((
                format!("STACK_{name}_LOG"),
                nginx.log().display().to_string(),
            ));
            env.push((format!("STACK_{name}_PID"), nginx.pid().to_string()));
        }
        env
    }
}

/// A running iipsrv the stack was told to use answers FastCGI.
fn check_running_iipsrv(address: &str) -> Result<(), Error> {
    let addr: std::net::SocketAddr = address
        .parse()
        .map_err(|e| Error::setup("iipsrv", format!("{address:?} is not HOST:PORT: {e}")))?;
    crate::probe::fastcgi(addr).map_err(|why| {
        Error::setup(
            "iipsrv",
            format!("the running iipsrv at {address} does not answer: {why}"),
        )
    })
}

/// `gateway.masters` for the stack's Garage: every identifier is the object key of its master.
fn masters_from(garage: &Garage) -> MastersConfig {
    let s3 = S3Config {
        endpoint: Some(garage.endpoint()),
        region: Some(garage::REGION.to_owned()),
        force_path_style: true,
        access_key_id: Some(garage.access_key_id.clone()),
        secret_access_key_file: Some(garage.secret_file()),
        ..S3Config::default()
    };
    MastersConfig::new(
        s3,
        vec![RuleConfig {
            pattern: "^(.+)$".to_owned(),
            bucket: garage.bucket.clone(),
            key: "${1}".to_owned(),
            bucket_from_identifier: false,
        }],
    )
}

/// `dir/admin-token`, made once (mode 600): the admin API's bearer token.
fn admin_token(dir: &Path) -> Result<PathBuf, Error> {
    let file = dir.join("admin-token");
    garage::kept_secret(&file, || garage::random_hex(24))?;
    Ok(file)
}

/// `cached-gateway` → `CACHED_GATEWAY`.
pub fn variable_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert_eq!(variable_name("gateway"), "GATEWAY");
        assert_eq!(variable_name("cached-gateway"), "CACHED_GATEWAY");
    }

    #[test]
    fn the_admin_token_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = admin_token(dir.path()).unwrap();
        let token = std::fs::read_to_string(&file).unwrap();
        assert_eq!(token.len(), 48);
        admin_token(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    }
}
