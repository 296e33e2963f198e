//! NameServer configuration, in two stages (STYLE.md §4): [`RawNameServerConfig`] is the TOML
//! file as written (every key optional, unknown keys rejected so typos are caught), and
//! [`NameServerConfig`] is the validated form the server runs with (typed addresses and
//! `Duration`s). Precedence: built-in defaults, then the file, then command-line flags (which
//! `main.rs` applies to the raw stage before validation).
//!
//! `deploy/nameserver.toml` is the annotated default file; a test checks that it parses to
//! exactly [`NameServerConfig::default`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tern_common::protocol::DEFAULT_MAX_FRAME_LEN;
use thiserror::Error;

/// Default listen address: every interface, RocketMQ's NameServer port 9876.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9876";
/// Default broker expiry: 120 000 ms without a registration or heartbeat (RocketMQ's
/// `DEFAULT_BROKER_CHANNEL_EXPIRED_TIME`).
pub const DEFAULT_BROKER_EXPIRY_MS: u64 = 120_000;
/// Default interval of the liveness scan: 5 000 ms (RocketMQ 5.x `scanNotActiveBrokerInterval`).
pub const DEFAULT_SCAN_INTERVAL_MS: u64 = 5_000;
/// Default bound on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default idle timeout: a connection silent for 120 000 ms is closed (RocketMQ's
/// `serverChannelMaxIdleTimeSeconds`).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 120_000;

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}")]
    Io {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration (syntax, type, unknown key).
    #[error("parsing config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value parsed but is out of range.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The TOML key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The configuration file as written. Every key is optional and defaults to the value
/// documented on [`NameServerConfig`]'s fields; unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNameServerConfig {
    /// `IP:PORT` to listen on.
    pub listen: String,
    /// Broker expiry, ms.
    pub broker_expiry_ms: u64,
    /// Liveness scan interval, ms.
    pub scan_interval_ms: u64,
    /// Serve `orderTopicConf` from KV namespace `ORDER_TOPIC_CONFIG`.
    pub order_message_enable: bool,
    /// Answer GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub enable_all_topic_list: bool,
    /// Largest accepted frame, bytes, including the 4-byte length prefix.
    pub max_frame_len: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Idle timeout, ms; 0 disables it.
    pub idle_timeout_ms: u64,
    /// `IP:PORT` of the Prometheus metrics endpoint; absent (the default) turns it off.
    pub metrics_listen: Option<String>,
    /// File the KV store is persisted to (RocketMQ `kvConfigPath`); absent (the default)
    /// keeps it in memory only.
    pub kv_config_path: Option<String>,
}

impl Default for RawNameServerConfig {
    fn default() -> Self {
        RawNameServerConfig {
            listen: DEFAULT_LISTEN.to_string(),
            broker_expiry_ms: DEFAULT_BROKER_EXPIRY_MS,
            scan_interval_ms: DEFAULT_SCAN_INTERVAL_MS,
            order_message_enable: false,
            enable_all_topic_list: true,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            metrics_listen: None,
            kv_config_path: None,
        }
    }
}

impl RawNameServerConfig {
    /// Parses TOML text.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] for bad syntax, wrong types or unknown keys.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] if it cannot be read, else as [`Self::from_toml_str`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }
}

/// The validated NameServer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServerConfig {
    /// Address to listen on. Default `0.0.0.0:9876`.
    pub listen: SocketAddr,
    /// A broker that neither re-registers nor heartbeats for this long is removed from every
    /// route. Default 120 s. A broker may set its own value with the REGISTER_BROKER header
    /// `heartbeatTimeoutMillis`.
    pub broker_expiry: Duration,
    /// How often the liveness scan runs. Default 5 s.
    pub scan_interval: Duration,
    /// Whether routes carry `orderTopicConf` from KV namespace `ORDER_TOPIC_CONFIG`
    /// (RocketMQ `orderMessageEnable`). Default false.
    pub order_message_enable: bool,
    /// Whether GET_ALL_TOPIC_LIST_FROM_NAMESERVER is answered (RocketMQ
    /// `enableAllTopicList`); when false it gets SYSTEM_ERROR `disable`. Default true.
    pub enable_all_topic_list: bool,
    /// Largest accepted frame in bytes, including the 4-byte length prefix; a bigger frame
    /// closes its connection. Default 16 MiB (RocketMQ's `frameMaxLength`).
    pub max_frame_len: usize,
    /// Most concurrent connections. Default 10 000.
    pub max_connections: usize,
    /// A connection on which nothing arrives for this long is closed; `None` never.
    /// Default 120 s.
    pub idle_timeout: Option<Duration>,
    /// Where `GET /metrics` is served (Prometheus/OpenMetrics text); `None` (the default)
    /// serves no metrics. See `docs/metrics.md`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the KV store (PUT_KV_CONFIG, ...) is persisted, in Java's `kvConfig.json` format
    /// (RocketMQ `kvConfigPath`, whose Java default is `~/namesrv/kvConfig.json`); it is
    /// loaded at start and rewritten atomically after every change. `None` (the default)
    /// keeps the store in memory only, so a restart forgets it, as it forgets routes.
    pub kv_config_path: Option<PathBuf>,
}

impl Default for NameServerConfig {
    fn default() -> Self {
        // The raw defaults are valid by construction.
        NameServerConfig::try_from(RawNameServerConfig::default())
            .expect("invariant: the built-in defaults validate")
    }
}

impl TryFrom<RawNameServerConfig> for NameServerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawNameServerConfig) -> Result<Self, ConfigError> {
        let listen: SocketAddr = raw.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            reason: format!("`{}` is not an IP:PORT socket address", raw.listen),
        })?;
        if raw.broker_expiry_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "broker_expiry_ms",
                reason: "must be greater than 0".into(),
            });
        }
        if raw.scan_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "scan_interval_ms",
                reason: "must be greater than 0".into(),
            });
        }
        // A frame must at least hold the length prefix and the header-length word.
        if raw.max_frame_len < 8 {
            return Err(ConfigError::Invalid {
                key: "max_frame_len",
                reason: "must be at least 8 bytes".into(),
            });
        }
        if raw.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                reason: "must be greater than 0".into(),
            });
        }
        let metrics_listen = match &raw.metrics_listen {
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        key: "metrics_listen",
                        reason: format!("`{text}` is not an IP:PORT socket address"),
                    })?,
            ),
            None => None,
        };
        let kv_config_path = match &raw.kv_config_path {
            Some(text) if text.trim().is_empty() => {
                return Err(ConfigError::Invalid {
                    key: "kv_config_path",
                    reason: "must not be empty (leave the key out to keep the store in memory)"
                        .into(),
                })
            }
            Some(text) => Some(PathBuf::from(text)),
            None => None,
        };
        Ok(NameServerConfig {
            metrics_listen,
            kv_config_path,
            listen,
            broker_expiry: Duration::from_millis(raw.broker_expiry_ms),
            scan_interval: Duration::from_millis(raw.scan_interval_ms),
            order_message_enable: raw.order_message_enable,
            enable_all_topic_list: raw.enable_all_topic_list,
            max_frame_len: raw.max_frame_len,
            max_connections: raw.max_connections,
            idle_timeout: (raw.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(raw.idle_timeout_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let raw = RawNameServerConfig::from_toml_str("").unwrap();
        let cfg = NameServerConfig::try_from(raw).unwrap();
        assert_eq!(cfg, NameServerConfig::default());
        assert_eq!(cfg.listen.port(), 9876);
        assert_eq!(cfg.broker_expiry, Duration::from_secs(120));
        assert_eq!(cfg.scan_interval, Duration::from_secs(5));
        assert!(!cfg.order_message_enable);
        assert!(cfg.enable_all_topic_list);
        assert_eq!(cfg.max_frame_len, 16 * 1024 * 1024);
    }

    #[test]
    fn deploy_file_documents_exactly_the_defaults() {
        let text = include_str!("../../deploy/nameserver.toml");
        let cfg = NameServerConfig::try_from(RawNameServerConfig::from_toml_str(text).unwrap());
        assert_eq!(cfg.unwrap(), NameServerConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = RawNameServerConfig::from_toml_str("broker_expiry = 5").unwrap_err();
        assert!(err.to_string().contains("broker_expiry"), "{err}");
    }

    #[test]
    fn values_are_validated() {
        for (text, key) in [
            ("listen = \"nonsense\"", "listen"),
            ("broker_expiry_ms = 0", "broker_expiry_ms"),
            ("scan_interval_ms = 0", "scan_interval_ms"),
            ("max_frame_len = 4", "max_frame_len"),
            ("max_connections = 0", "max_connections"),
            ("kv_config_path = \"\"", "kv_config_path"),
        ] {
            let raw = RawNameServerConfig::from_toml_str(text).unwrap();
            match NameServerConfig::try_from(raw) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn file_values_override_defaults() {
        let raw = RawNameServerConfig::from_toml_str(
            "listen = \"127.0.0.1:0\"\nbroker_expiry_ms = 1500\nscan_interval_ms = 200\nidle_timeout_ms = 0\norder_message_enable = true",
        )
        .unwrap();
        let cfg = NameServerConfig::try_from(raw).unwrap();
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.broker_expiry, Duration::from_millis(1500));
        assert_eq!(cfg.scan_interval, Duration::from_millis(200));
        assert_eq!(cfg.idle_timeout, None);
        assert!(cfg.order_message_enable);
    }

    #[test]
    fn kv_config_path_is_off_by_default_and_settable() {
        assert_eq!(NameServerConfig::default().kv_config_path, None);
        let raw =
            RawNameServerConfig::from_toml_str("kv_config_path = \"/var/lib/tern/kvConfig.json\"")
                .unwrap();
        let cfg = NameServerConfig::try_from(raw).unwrap();
        assert_eq!(
            cfg.kv_config_path.as_deref(),
            Some(Path::new("/var/lib/tern/kvConfig.json"))
        );
    }
}
