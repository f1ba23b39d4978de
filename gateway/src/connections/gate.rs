//! Counting what is open at once, in total and per client, with permits that give their place
//! back when dropped.
//!
//! Used twice (see [`super`]): for connections (keyed by the peer's address) and for requests
//! that came through a trusted proxy (keyed by the client address the proxy recorded, since all
//! of them share the proxy's connections).
//!
//! IPv6 clients are counted per /64: one subscriber usually holds a whole /64, so counting single
//! addresses would give each of them 2^64 allowances.
//!
//! **Invariant:** pure bookkeeping under one lock; no I/O, no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The total is at its limit.
    Total,
    /// This client already holds its share.
    PerClient,
}

/// The limits and the counts.
#[derive(Debug)]
pub struct Gate {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// A client as counted: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The first 64 bits.
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            // An IPv4-mapped IPv6 address is the IPv4 client it maps.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One place held; given back on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    client: Option<ClientKey>,
}

impl Gate {
    /// A gate for at most `max_total` places, `max_per_client` of them per client.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max_total,
            max_per_client,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a place for `client` (`None`: counted in the total only).
    ///
    /// # Errors
    /// [`Refused`] when the total or the client's share is used up; nothing is taken then.
    pub fn enter(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Permit, Refused> {
        let client = client.map(ClientKey::from);
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refused::Total);
        }
        if let Some(key) = client {
            let held = counts.per_client.entry(key).or_insert(0);
            if *held >= self.max_per_client {
                return Err(Refused::PerClient);
            }
            *held += 1;
        }
        counts.total += 1;
        Ok(Permit {
            gate: self.clone(),
            client,
        })
    }

    /// Places held now, in total.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Clients holding at least one place now (the map never keeps a client at zero).
    pub fn clients(&self) -> usize {
        self.lock().per_client.len()
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts are plain integers: a panic elsewhere cannot leave them half-updated.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.gate.lock();
        counts.total -= 1;
        if let Some(key) = self.client {
            if let Some(held) = counts.per_client.get_mut(&key) {
                *held -= 1;
                if *held == 0 {
                    counts.per_client.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_total_and_each_clients_share_are_bounded() {
        let gate = Gate::new(3, 2);
        let a1 = gate.enter(ip("192.0.2.1")).unwrap();
        let _a2 = gate.enter(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.enter(ip("192.0.2.1")).unwrap_err(), Refused::PerClient);
        let _b = gate.enter(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.enter(ip("192.0.2.3")).unwrap_err(), Refused::Total);
        assert_eq!(gate.enter(None).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _c = gate.enter(None).unwrap();
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn places_come_back_and_no_client_stays_at_zero() {
        let gate = Gate::new(100, 100);
        let permits: Vec<Permit> = (0..50)
            .map(|i| gate.enter(ip(&format!("192.0.2.{}", i % 7))).unwrap())
            .collect();
        assert_eq!(gate.open(), 50);
        assert_eq!(gate.clients(), 7);
        drop(permits);
        assert_eq!(gate.open(), 0);
        assert_eq!(gate.clients(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let gate = Gate::new(100, 1);
        let _first = gate.enter(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.enter(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refused::PerClient
        );
        assert!(gate.enter(ip("2001:db8:1:3::1")).is_ok());
        // IPv4-mapped addresses are their IPv4 client, and no IPv6 /64 collides with IPv4.
        let _v4 = gate.enter(ip("192.0.2.1")).unwrap();
        assert_eq!(
            gate.enter(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refused::PerClient
        );
        assert!(gate.enter(ip("::")).is_ok());
    }
}
