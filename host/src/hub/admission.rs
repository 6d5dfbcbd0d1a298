//! Connection counting, globally and per client IP, before a connection is upgraded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

#[derive(Default)]
pub struct Admission {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    TooManyConnections,
    TooManyFromAddress,
}

impl AdmitError {
    pub fn reason(self) -> &'static str {
        match self {
            AdmitError::TooManyConnections => "server connection limit reached",
            AdmitError::TooManyFromAddress => "connection limit for this address reached",
        }
    }
}

/// Holds one admitted connection; dropping it frees the slot.
pub struct AdmitGuard {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max_total: usize, max_per_ip: usize) -> Result<AdmitGuard, AdmitError> {
        let mut per_ip = self.per_ip.lock();
        if self.total.load(Relaxed) >= max_total {
            return Err(AdmitError::TooManyConnections);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(AdmitError::TooManyFromAddress);
        }
        *n += 1;
        self.total.fetch_add(1, Relaxed);
        Ok(AdmitGuard { admission: self.clone(), ip })
    }
}

impl Drop for AdmitGuard {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.admission.total.fetch_sub(1, Relaxed);
    }
}
