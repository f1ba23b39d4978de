//! One launcher for the local stack and the tests.
//!
//! Starts iipsrv (a pool of FastCGI processes, supervised or not), Redis (password, TLS),
//! Garage (single node, one bucket, one key), nginx (the baseline in front of iipsrv, or static
//! files) and the gateway, on free loopback ports or fixed ones, from typed values. The
//! gateway's YAML file is written by serialising the gateway's own raw config types.
//!
//! Every service is *ready* when it answers its protocol ([`probe`]: Redis `PING`, an HTTP
//! answer from Garage's S3 API and nginx, a FastCGI `GET_VALUES` answer from iipsrv, `200` from
//! the gateway's admin `/readyz`), polled with a deadline; a service that does not answer fails with
//! its name, its address, the last probe error and the end of its log
//! ([`error::NotReady`]). No readiness check ever looks at process names.
//!
//! Layout, bottom-up:
//! - [`binaries`]: every external program's path (environment overrides, Debian defaults);
//! - [`ports`], [`probe`], [`process`]: free ports, protocol probes, child processes with logs
//!   and stop signals, readiness polling;
//! - [`iipsrv`], [`redis`], [`garage`], [`nginx`], [`gateway`]: one module per service;
//! - [`stack`]: a whole stack from a [`StackSpec`], stopped in reverse order, and the
//!   environment variables that describe it; [`state`]: the state file of a detached stack;
//! - [`fault_proxy`]: a TCP proxy that stalls or cuts answers, for failure tests.
//!
//! The `stack` binary (`stack up`, `down`, `run`, `env`) is what the scripts call; the tests use
//! the library.

#![deny(missing_docs)]

pub mod binaries;
pub mod error;
pub mod fault_proxy;
pub mod garage;
pub mod gateway;
pub mod iipsrv;
pub mod nginx;
pub mod ports;
pub mod probe;
pub mod process;
pub mod redis;
#[allow(clippy::module_inception)]
pub mod stack;
pub mod state;

pub use error::Error;
pub use fault_proxy::FaultProxy;
pub use garage::{Garage, GarageSpec};
pub use iipsrv::{Iipsrv, IipsrvPool, IipsrvSpec};
pub use ports::{free_port, free_ports};
pub use redis::{Redis, RedisSpec};
pub use stack::{Stack, StackSpec};
