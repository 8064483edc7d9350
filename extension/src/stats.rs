//! `mongoPoolStats`: a command answered locally (on any database) with what the pool is doing,
//! for users debugging from their function and for tests.

use std::sync::atomic::Ordering;

use bson::{Bson, Document, doc};

use crate::proxy::Proxy;

/// The command name.
pub const COMMAND: &str = "mongoPoolStats";

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The reply.
pub fn reply(proxy: &Proxy) -> Document {
    let m = proxy.metrics.snapshot();
    let d = &proxy.downstream;
    let pools: Vec<Bson> = proxy
        .topology
        .servers()
        .iter()
        .map(|s| {
            let (idle, total) = s.pool.sizes();
            Bson::Document(doc! {
                "address": s.address.to_string(),
                "state": s.kind().map_or_else(|| "Unknown".to_owned(), |k| format!("{k:?}")),
                "total": count(total as u64),
                "idle": count(idle as u64),
                "inUse": count(s.pool.in_use() as u64),
                "generation": count(s.pool.generation()),
            })
        })
        .collect();
    let (cursors, transactions, sessions) = proxy.router.sizes();
    doc! {
        "pools": pools,
        "checkouts": count(m.checkouts),
        "checkoutWaits": count(m.checkout_waits),
        "checkoutWaitMillis": (m.checkout_wait_micros as f64) / 1000.0,
        "checkoutFailures": count(m.checkout_failures),
        "authentications": {
            "attempts": count(m.auth_attempts),
            "ok": count(m.auth_succeeded),
            "failed": count(m.auth_failed),
        },
        "upstreamConnections": {
            "created": count(m.connections_created),
            "closed": count(m.connections_closed),
        },
        "downstreamConnections": {
            "current": count(d.current.load(Ordering::Relaxed)),
            "total": count(d.total.load(Ordering::Relaxed)),
            "refused": count(d.refused.load(Ordering::Relaxed)),
            "malformed": count(d.malformed.load(Ordering::Relaxed)),
        },
        "requests": count(d.requests.load(Ordering::Relaxed)),
        "forwarded": count(d.forwarded.load(Ordering::Relaxed)),
        "proxyErrors": count(d.errors.load(Ordering::Relaxed)),
        "rejected": count(d.rejected.load(Ordering::Relaxed)),
        "abandoned": count(d.abandoned.load(Ordering::Relaxed)),
        "pings": count(m.pings),
        "pingFailures": count(m.ping_failures),
        "freezes": count(m.freezes),
        "pinned": { "cursors": count(cursors as u64), "transactions": count(transactions as u64), "sessions": count(sessions as u64) },
        "uptimeMillis": count(m.uptime_ms),
        "ok": 1.0,
    }
}
