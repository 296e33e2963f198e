//! [`ClientConfig`]: the settings every producer, consumer and admin client shares
//! (Java's `ClientConfig`).

use std::time::Duration;

use tern_common::protocol::SerializeType;

use crate::error::{ClientError, Result};

/// Settings shared by every client role. Builders fill it; see their `namesrv_addr`,
/// `serialize_type`, `instance_name` and interval methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// NameServer addresses (`host:port`), tried in turn.
    pub namesrv_addrs: Vec<String>,
    /// Header and structured-body encoding of requests: Tern's MessagePack by default,
    /// [`SerializeType::Json`] to talk to an Apache RocketMQ cluster.
    pub serialize_type: SerializeType,
    /// Timeout of ordinary requests (route, heartbeat, offsets, admin). Default 3 s.
    pub rpc_timeout: Duration,
    /// Instance name, part of the client id and of the local offset-store path. `DEFAULT`
    /// (the default) is replaced by `<pid>#<nanos>` in the client id, as Java does.
    pub instance_name: String,
    /// The IP this client reports (client id, heartbeat). Default: the first non-loopback
    /// IPv4 address the host routes through, else `127.0.0.1`.
    pub client_ip: String,
    /// Period of heartbeats to brokers. Default 30 s.
    pub heartbeat_interval: Duration,
    /// Period of route refreshes from the NameServer. Default 30 s.
    pub route_refresh_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addrs: Vec::new(),
            serialize_type: SerializeType::MsgPack,
            rpc_timeout: Duration::from_secs(3),
            instance_name: "DEFAULT".to_string(),
            client_ip: local_ip(),
            heartbeat_interval: Duration::from_secs(30),
            route_refresh_interval: Duration::from_secs(30),
        }
    }
}

impl ClientConfig {
    /// Sets the NameServer list from RocketMQ's `;`-separated form (`"a:9876;b:9876"`).
    pub fn set_namesrv_addr(&mut self, addrs: &str) {
        self.namesrv_addrs = addrs
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }

    /// Checks the settings a client cannot start without.
    ///
    /// # Errors
    /// [`ClientError::Config`] when no NameServer address is set or a timeout is zero.
    pub fn validate(&self) -> Result<()> {
        if self.namesrv_addrs.is_empty() {
            return Err(ClientError::Config("no NameServer address set".into()));
        }
        if self.rpc_timeout.is_zero() {
            return Err(ClientError::Config("rpc timeout must be positive".into()));
        }
        if self.heartbeat_interval.is_zero() || self.route_refresh_interval.is_zero() {
            return Err(ClientError::Config("intervals must be positive".into()));
        }
        Ok(())
    }

    /// The client id `ip@instance` with `DEFAULT` replaced by `<pid>#<nanos>` (PROTOCOL.md
    /// §2.3, HEART_BEAT), so two clients in one process get different ids.
    pub(crate) fn build_client_id(&self) -> String {
        let instance = if self.instance_name == "DEFAULT" {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}#{}", std::process::id(), nanos)
        } else {
            self.instance_name.clone()
        };
        format!("{}@{}", self.client_ip, instance)
    }
}

/// The host's outward IPv4 address: the local address of a UDP socket "connected" to a
/// public address (no packet is sent), or `127.0.0.1` when there is no route.
fn local_ip() -> String {
    let probe = || -> Option<String> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect("192.0.2.1:9").ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then(|| ip.to_string())
    };
    probe().unwrap_or_else(|| "127.0.0.1".to_string())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namesrv_list_splits_on_semicolons() {
        let mut c = ClientConfig::default();
        c.set_namesrv_addr(" a:1; ;b:2;");
        assert_eq!(c.namesrv_addrs, vec!["a:1", "b:2"]);
        assert!(c.validate().is_ok());
        c.set_namesrv_addr("");
        assert!(c.validate().is_err());
    }

    #[test]
    fn default_instance_name_makes_unique_client_ids() {
        let c = ClientConfig {
            client_ip: "10.0.0.9".into(),
            ..Default::default()
        };
        let a = c.build_client_id();
        assert!(
            a.starts_with(&format!("10.0.0.9@{}#", std::process::id())),
            "{a}"
        );
        let named = ClientConfig {
            instance_name: "app1".into(),
            ..c
        };
        assert_eq!(named.build_client_id(), "10.0.0.9@app1");
    }
}
