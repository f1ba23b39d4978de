//! Loopback ports: free ones for stacks that must not collide, checks for fixed ones.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::error::Error;

/// `n` distinct loopback ports that are free right now. The listeners are held until all `n`
/// are chosen, so the ports differ; another process could still take one before the service
/// binds it, which callers accept (tests retry nothing; a collision shows as a clear error).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// How many times [`retry_on_collision`] starts a service (on free ports: the services'
/// `start`/`launch` use it when no fixed port was asked).
pub const COLLISION_ATTEMPTS: usize = 5;

/// Runs `start` (which chooses new free ports each time) until it does not fail with what may
/// be a port collision ([`Error::may_be_port_collision`]), at most [`COLLISION_ATTEMPTS`]
/// times: tests start many services at once, and the kernel also hands out ports of the same
/// range to outgoing connections, so a port free when chosen can be taken before it is bound.
///
/// # Errors
/// The last attempt's error.
pub fn retry_on_collision<T>(mut start: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(error) if attempt < COLLISION_ATTEMPTS && error.may_be_port_collision() => {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// One free loopback port.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn in_use(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// `Ok` when nothing listens on `port`, for a service about to bind it.
///
/// # Errors
/// [`Error::PortInUse`].
pub fn check_free(service: &str, port: u16) -> Result<(), Error> {
    if in_use(port) {
        Err(Error::PortInUse {
            service: service.to_owned(),
            port,
        })
    } else {
        Ok(())
    }
}

/// `fixed` when given, else a free port.
pub fn fixed_or_free(fixed: Option<u16>) -> u16 {
    fixed.unwrap_or_else(free_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_differ_and_are_free() {
        let ports = free_ports(8);
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 8);
        assert!(ports.iter().all(|&port| !in_use(port)));
    }

    #[test]
    fn a_listening_port_is_in_use() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(in_use(port));
        assert!(matches!(
            check_free("test", port),
            Err(Error::PortInUse { .. })
        ));
    }

    #[test]
    fn a_collision_is_retried_and_other_errors_are_not() {
        let taken = || Error::PortInUse {
            service: "test".into(),
            port: 1,
        };
        let mut calls = 0;
        let outcome = retry_on_collision(|| {
            calls += 1;
            if calls < 3 {
                Err(taken())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(outcome.unwrap(), 3);

        let mut calls = 0;
        let outcome: Result<(), Error> = retry_on_collision(|| {
            calls += 1;
            Err(taken())
        });
        assert!(matches!(outcome, Err(Error::PortInUse { .. })));
        assert_eq!(calls, COLLISION_ATTEMPTS);

        let mut calls = 0;
        let outcome: Result<(), Error> = retry_on_collision(|| {
            calls += 1;
            Err(Error::Setup {
                service: "test".into(),
                message: "no".into(),
            })
        });
        assert!(outcome.is_err());
        assert_eq!(calls, 1, "a setup failure is not a port collision");
    }
}
