//! Broker configuration in two stages (STYLE.md §4): [`RawBrokerConfig`] is what a TOML file
//! (or the embedded default) says, with serde defaults and `deny_unknown_fields` so typos are
//! caught; [`BrokerConfig`] is the validated form with typed values (`Duration`s, enums, the
//! parsed delay table) that the rest of the broker sees.
//!
//! Precedence: built-in defaults, then the TOML file, then command-line flags (applied by
//! `main.rs` to the raw struct before validation). Every key, its default and its unit is
//! documented on the raw struct's fields and in `deploy/broker.toml`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// The default delay-level table (RocketMQ `messageDelayLevel`, PROTOCOL.md §6.1).
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str =
    "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// The embedded default configuration file (identical to `deploy/broker.toml`); `tern-broker`
/// runs with it when no `--config` is given.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../../deploy/broker.toml");

/// Largest IndexFile accepted, bytes (`i32::MAX`: RocketMQ addresses index files with ints).
pub const MAX_INDEX_FILE_SIZE: u64 = 2_147_483_647;

/// Largest `worker_threads` accepted.
pub const MAX_WORKER_THREADS: usize = 1_024;

/// The runtime's worker threads when `worker_threads` is 0: one less than the CPUs this
/// process may run on, at least 1.
///
/// The store runs threads of its own beside the runtime (reput, CommitLog and logic-queue
/// flush, prefault). On a 2-CPU machine a second worker only contends with them: a publish
/// run with 256 sends in flight went from a median of about 192k to 211k msgs/s with one
/// worker, and consume and SYNC_FLUSH publish were no slower (docs/BENCHMARKS.md, fifth
/// session).
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// When the CommitLog is made durable relative to a send's acknowledgement (PROTOCOL.md §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum FlushDiskType {
    /// Acknowledge after the append to the mapped file; flush in the background.
    #[default]
    #[serde(rename = "ASYNC_FLUSH")]
    AsyncFlush,
    /// Acknowledge after a group-commit flush covers the message (or FLUSH_DISK_TIMEOUT).
    #[serde(rename = "SYNC_FLUSH")]
    SyncFlush,
}

impl std::str::FromStr for FlushDiskType {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ASYNC_FLUSH" => Ok(FlushDiskType::AsyncFlush),
            "SYNC_FLUSH" => Ok(FlushDiskType::SyncFlush),
            _ => Err(ConfigError::Invalid {
                key: "flush_disk_type",
                reason: format!("`{s}` is neither ASYNC_FLUSH nor SYNC_FLUSH"),
            }),
        }
    }
}

/// A configuration that could not be read or validated.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML text does not parse or has unknown keys.
    #[error("invalid broker configuration file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A key has a value outside its allowed range or format.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
}

/// The broker configuration as written in TOML. Every field has a default; unknown keys are
/// rejected. Durations are integers with their unit in the key name.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawBrokerConfig {
    /// Cluster this broker belongs to (`brokerClusterName`). Default `DefaultCluster`.
    pub broker_cluster_name: String,
    /// Broker name shared by a master and its slaves (`brokerName`). Default `broker-a`.
    pub broker_name: String,
    /// 0 = master, > 0 = slave (`brokerId`). Default 0. Only masters are supported.
    pub broker_id: i64,
    /// Address the remoting server binds, `HOST:PORT`. Default `0.0.0.0:10911`.
    pub listen: String,
    /// Advertised IP (`brokerIP1`) put into STOREHOST, msgIds and the NameServer registration.
    /// Default: the listen IP, or the host's primary non-loopback IPv4 when listening on
    /// `0.0.0.0`.
    pub broker_ip: Option<String>,
    /// NameServer addresses, `;`-separated (`namesrvAddr`). Default empty: no registration.
    pub namesrv_addr: String,
    /// Root directory of the store (`storePathRootDir`). Default `./store`.
    pub store_path_root_dir: String,
    /// `ASYNC_FLUSH` (default) or `SYNC_FLUSH`.
    pub flush_disk_type: String,
    /// Size of one CommitLog file in bytes. Default 1 GiB (1_073_741_824).
    pub mapped_file_size_commit_log: u64,
    /// Number of 20-byte units per ConsumeQueue file. Default 300_000.
    pub consume_queue_units_per_file: u64,
    /// Hash slots per IndexFile (`maxHashSlotNum`, 4 bytes each). Default 5_000_000.
    pub max_hash_slot_num: u64,
    /// Entries per IndexFile (`maxIndexNum`, 20 bytes each; at least 2). Default 20_000_000,
    /// which with the default slots makes a 420_000_040-byte file.
    pub max_index_num: u64,
    /// Largest message body (or batch body) accepted, bytes. Default 4 MiB (4_194_304).
    pub max_message_size: u64,
    /// Interval of the background CommitLog flush under ASYNC_FLUSH, ms. Default 500.
    pub flush_interval_commit_log_ms: u64,
    /// How long a SYNC_FLUSH send waits for its flush, ms. Default 5_000.
    pub sync_flush_timeout_ms: u64,
    /// Age after which CommitLog files are deleted, hours. Default 72.
    pub file_reserved_hours: u64,
    /// Cron expression (with seconds) of the daily retention pass. Default `0 0 4 * * *`.
    pub delete_when: String,
    /// Disk usage ratio (0..1) above which old files are deleted at once. Default 0.75.
    pub disk_max_used_space_ratio: f64,
    /// Whether recovery verifies body CRCs. Default true.
    pub check_crc_on_recover: bool,
    /// Create unknown topics on send through the `TBW102` template (`autoCreateTopicEnable`).
    /// Default true.
    pub auto_create_topic_enable: bool,
    /// Queue count of `TBW102` and of auto-created topics at most. Default 8.
    pub default_topic_queue_nums: i32,
    /// Create unknown subscription groups on first use (`autoCreateSubscriptionGroup`).
    /// Default true.
    pub auto_create_subscription_group: bool,
    /// Hold pulls that find nothing for `suspendTimeoutMillis` (long polling). Default true.
    pub long_polling_enable: bool,
    /// Hold time of a pull when long polling is off, ms. Default 1_000.
    pub short_polling_time_ms: u64,
    /// Accept SQL92 subscriptions (`enablePropertyFilter`): compile them at HEART_BEAT and
    /// CHECK_CLIENT_CONFIG and evaluate them against each record's properties on PULL.
    /// Default **true** in Tern (RocketMQ defaults to false); when false, SQL92 pulls get
    /// SYSTEM_ERROR and CHECK_CLIENT_CONFIG refuses them, as a default Java broker does.
    pub enable_property_filter: bool,
    /// Period of REGISTER_BROKER to every NameServer, ms (clamped to 10_000..=60_000).
    /// Default 30_000.
    pub register_name_server_period_ms: u64,
    /// `heartbeatTimeoutMillis` sent with REGISTER_BROKER: the NameServer drops this broker
    /// after that long without a registration, ms. Default 120_000.
    pub broker_heartbeat_timeout_ms: u64,
    /// Age below which a half message is not checked back, ms. Default 6_000.
    pub transaction_timeout_ms: u64,
    /// Interval between transaction check-back passes, ms. Default 30_000.
    pub transaction_check_interval_ms: u64,
    /// Check-backs after which a half message is discarded. Default 15.
    pub transaction_check_max: i32,
    /// Delay-level table, space-separated durations with unit s, m, h or d. Default
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
    pub message_delay_level: String,
    /// Retries before a message goes to the DLQ when the group/client does not say. Default 16.
    pub max_reconsume_times: i32,
    /// Largest delay of a timer message, seconds. Default 259_200 (3 days).
    pub timer_max_delay_sec: u64,
    /// Most concurrent client connections. Default 10_000.
    pub max_connections: usize,
    /// Largest accepted frame including its 4-byte length prefix, bytes. Default 16 MiB.
    pub max_frame_len: usize,
    /// Most pulls held (long polling) per topic@queue. Default 1_024.
    pub max_suspended_pulls_per_queue: usize,
    /// A client channel silent this long is dropped from the registry, ms. Default 120_000.
    pub channel_expired_timeout_ms: u64,
    /// Interval of the consumer offset snapshot, ms. Default 5_000.
    pub offset_persist_interval_ms: u64,
    /// Lifetime of an orderly-consumption queue lock without renewal, ms. Default 60_000.
    pub lock_max_live_time_ms: u64,
    /// Threads of the async runtime that serves connections and runs request handlers;
    /// 0 (the default) means one less than the CPUs available to the process, at least 1,
    /// which leaves a CPU to the store's own threads (reput, flush, prefault). At most 1_024.
    pub worker_threads: usize,
    /// `IP:PORT` of the Prometheus metrics endpoint (`GET /metrics`). Default absent: off.
    pub metrics_listen: Option<String>,
    /// Also serve the remoting protocol on `listen port - 2` (RocketMQ's "fast"/VIP port,
    /// `fastListenPort`, 10909 by default), where Java clients older than 4.5 send when
    /// `vipChannelEnabled` is true (their default). Default absent: on when the listen port
    /// is fixed (non-zero and above 2), off for port 0.
    pub fast_listen_port_enable: Option<bool>,
}

impl Default for RawBrokerConfig {
    fn default() -> Self {
        RawBrokerConfig {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            listen: "0.0.0.0:10911".into(),
            broker_ip: None,
            namesrv_addr: String::new(),
            store_path_root_dir: "./store".into(),
            flush_disk_type: "ASYNC_FLUSH".into(),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            consume_queue_units_per_file: 300_000,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            max_message_size: 4 * 1024 * 1024,
            flush_interval_commit_log_ms: 500,
            sync_flush_timeout_ms: 5_000,
            file_reserved_hours: 72,
            delete_when: "0 0 4 * * *".into(),
            disk_max_used_space_ratio: 0.75,
            check_crc_on_recover: true,
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            auto_create_subscription_group: true,
            long_polling_enable: true,
            short_polling_time_ms: 1_000,
            enable_property_filter: true,
            register_name_server_period_ms: 30_000,
            broker_heartbeat_timeout_ms: 120_000,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            message_delay_level: DEFAULT_MESSAGE_DELAY_LEVEL.into(),
            max_reconsume_times: 16,
            timer_max_delay_sec: 259_200,
            max_connections: 10_000,
            max_frame_len: 16 * 1024 * 1024,
            max_suspended_pulls_per_queue: 1_024,
            channel_expired_timeout_ms: 120_000,
            offset_persist_interval_ms: 5_000,
            lock_max_live_time_ms: 60_000,
            worker_threads: 0,
            metrics_listen: None,
            fast_listen_port_enable: None,
        }
    }
}

impl RawBrokerConfig {
    /// Parses a TOML document; absent keys keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] for bad syntax, wrong types or unknown keys.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }
}

/// The validated broker configuration (what every other module reads).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Cluster name.
    pub broker_cluster_name: String,
    /// Broker name.
    pub broker_name: String,
    /// Broker id (0 = master).
    pub broker_id: i64,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Advertised IP (STOREHOST, msgIds, registration).
    pub broker_ip: IpAddr,
    /// NameServer addresses (`host:port` each).
    pub namesrv_addrs: Vec<String>,
    /// Store root directory.
    pub store_path_root_dir: PathBuf,
    /// Flush mode.
    pub flush_disk_type: FlushDiskType,
    /// CommitLog file size, bytes.
    pub mapped_file_size_commit_log: u64,
    /// ConsumeQueue units per file.
    pub consume_queue_units_per_file: u64,
    /// IndexFile hash slots per file.
    pub max_hash_slot_num: u64,
    /// IndexFile entries per file.
    pub max_index_num: u64,
    /// Largest message body, bytes.
    pub max_message_size: u64,
    /// Background flush interval.
    pub flush_interval_commit_log: Duration,
    /// SYNC_FLUSH wait bound.
    pub sync_flush_timeout: Duration,
    /// File retention, hours.
    pub file_reserved_hours: u64,
    /// Retention cron expression.
    pub delete_when: String,
    /// Disk usage ratio threshold (0..1).
    pub disk_max_used_space_ratio: f64,
    /// Verify CRCs on recovery.
    pub check_crc_on_recover: bool,
    /// Auto-create topics through TBW102.
    pub auto_create_topic_enable: bool,
    /// Queue count of TBW102.
    pub default_topic_queue_nums: i32,
    /// Auto-create subscription groups.
    pub auto_create_subscription_group: bool,
    /// Long polling on.
    pub long_polling_enable: bool,
    /// Short-polling hold time.
    pub short_polling_time: Duration,
    /// SQL92 subscriptions accepted (`enablePropertyFilter`).
    pub enable_property_filter: bool,
    /// Registration period (10 s..=60 s).
    pub register_name_server_period: Duration,
    /// `heartbeatTimeoutMillis` of the registration.
    pub broker_heartbeat_timeout: Duration,
    /// Transaction check immunity.
    pub transaction_timeout: Duration,
    /// Transaction check pass interval.
    pub transaction_check_interval: Duration,
    /// Most check-backs per half message.
    pub transaction_check_max: i32,
    /// Parsed delay-level table; level N (1-based) is `message_delay_level[N - 1]`.
    pub message_delay_level: Vec<Duration>,
    /// Default max reconsume times.
    pub max_reconsume_times: i32,
    /// Timer messages' largest delay.
    pub timer_max_delay: Duration,
    /// Connection limit.
    pub max_connections: usize,
    /// Frame size limit, bytes.
    pub max_frame_len: usize,
    /// Held pulls per topic@queue.
    pub max_suspended_pulls_per_queue: usize,
    /// Client channel expiry.
    pub channel_expired_timeout: Duration,
    /// Consumer offset snapshot interval.
    pub offset_persist_interval: Duration,
    /// Queue lock lifetime.
    pub lock_max_live_time: Duration,
    /// Async runtime worker threads, resolved (at least 1; see
    /// [`RawBrokerConfig::worker_threads`]).
    pub worker_threads: usize,
    /// Where `GET /metrics` is served; `None` (the default) serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether the VIP listener on `listen port - 2` runs (see [`BrokerConfig::fast_listen_addr`]).
    pub fast_listen_port_enable: bool,
}

impl BrokerConfig {
    /// The advertised address `broker_ip:listen_port` (`brokerAddr`, STOREHOST).
    pub fn broker_addr(&self) -> SocketAddr {
        SocketAddr::new(self.broker_ip, self.listen.port())
    }

    /// The store host when the listener is bound to `port` (which may differ from the
    /// configured port when that was 0).
    pub fn store_host(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.broker_ip, port)
    }

    /// The VIP ("fast") listen address for a main listener bound to `bound`: the same IP and
    /// `bound.port() - 2` (RocketMQ `fastListenPort = listenPort - 2`), or `None` when
    /// [`BrokerConfig::fast_listen_port_enable`] is off or the port is below 3.
    pub fn fast_listen_addr(&self, bound: SocketAddr) -> Option<SocketAddr> {
        if !self.fast_listen_port_enable {
            return None;
        }
        let port = bound.port().checked_sub(2).filter(|p| *p > 0)?;
        Some(SocketAddr::new(bound.ip(), port))
    }

    /// The directory of the broker's metadata snapshots (`<store>/config`).
    pub fn config_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("config")
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::try_from(RawBrokerConfig::default())
            .expect("the built-in default configuration is valid")
    }
}

/// Parses one delay token such as `1s`, `5m`, `2h`, `1d` (PROTOCOL.md §6.1).
///
/// # Errors
/// [`ConfigError::Invalid`] for an empty, unit-less or non-numeric token.
pub fn parse_delay_token(token: &str) -> Result<Duration, ConfigError> {
    let bad = |reason: &str| ConfigError::Invalid {
        key: "message_delay_level",
        reason: format!("`{token}`: {reason}"),
    };
    let token = token.trim();
    let unit = token.chars().last().ok_or_else(|| bad("empty level"))?;
    let number = &token[..token.len() - unit.len_utf8()];
    let n: u64 = number
        .parse()
        .map_err(|_| bad("not a number followed by s, m, h or d"))?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3_600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(bad("unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a whole delay-level table (space-separated tokens, at least one, at most 255).
///
/// # Errors
/// [`ConfigError::Invalid`] for a bad token or an empty table.
pub fn parse_delay_levels(text: &str) -> Result<Vec<Duration>, ConfigError> {
    let levels = text
        .split_whitespace()
        .map(parse_delay_token)
        .collect::<Result<Vec<_>, _>>()?;
    if levels.is_empty() || levels.len() > 255 {
        return Err(ConfigError::Invalid {
            key: "message_delay_level",
            reason: format!("needs 1 to 255 levels, got {}", levels.len()),
        });
    }
    Ok(levels)
}

/// The host's primary non-loopback IPv4 address, found by asking the kernel which local
/// address a UDP socket would use towards a public address (no packet is sent). Falls back
/// to 127.0.0.1 on a host without a default route.
pub fn primary_ipv4() -> IpAddr {
    let probe = || -> Option<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl TryFrom<RawBrokerConfig> for BrokerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBrokerConfig) -> Result<Self, Self::Error> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let non_empty = |key: &'static str, v: &str| {
            if v.trim().is_empty() {
                Err(invalid(key, "must not be empty".into()))
            } else {
                Ok(v.trim().to_string())
            }
        };
        let listen: SocketAddr = raw
            .listen
            .trim()
            .parse()
            .map_err(|e| invalid("listen", format!("`{}`: {e}", raw.listen)))?;
        let broker_ip = match raw.broker_ip.as_deref().map(str::trim) {
            Some(ip) if !ip.is_empty() => ip
                .parse()
                .map_err(|e| invalid("broker_ip", format!("`{ip}`: {e}")))?,
            _ if listen.ip().is_unspecified() => primary_ipv4(),
            _ => listen.ip(),
        };
        let namesrv_addrs = raw
            .namesrv_addr
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    Ok(s.to_string())
                } else {
                    Err(invalid("namesrv_addr", format!("`{s}` is not HOST:PORT")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if raw.broker_id != 0 {
            return Err(invalid(
                "broker_id",
                "only masters (broker_id = 0) are supported".into(),
            ));
        }
        if raw.mapped_file_size_commit_log < 4096 {
            return Err(invalid(
                "mapped_file_size_commit_log",
                "must be at least 4096".into(),
            ));
        }
        if raw.consume_queue_units_per_file == 0 {
            return Err(invalid(
                "consume_queue_units_per_file",
                "must be positive".into(),
            ));
        }
        if raw.max_hash_slot_num == 0 {
            return Err(invalid("max_hash_slot_num", "must be positive".into()));
        }
        if raw.max_index_num < 2 {
            return Err(invalid("max_index_num", "must be at least 2".into()));
        }
        // An IndexFile is a 40-byte header, 4 bytes per slot and 20 bytes per entry; RocketMQ
        // addresses it with Java ints, so it must stay below 2 GiB.
        let index_file_size = raw
            .max_hash_slot_num
            .saturating_mul(4)
            .saturating_add(raw.max_index_num.saturating_mul(20))
            .saturating_add(40);
        if index_file_size > MAX_INDEX_FILE_SIZE {
            return Err(invalid(
                "max_index_num",
                format!(
                    "an IndexFile of {index_file_size} bytes (40 + 4 x max_hash_slot_num + 20 x \
                     max_index_num) exceeds {MAX_INDEX_FILE_SIZE}"
                ),
            ));
        }
        if raw.max_message_size == 0 || raw.max_message_size >= raw.mapped_file_size_commit_log {
            return Err(invalid(
                "max_message_size",
                "must be positive and below mapped_file_size_commit_log".into(),
            ));
        }
        if !(0.1..=0.95).contains(&raw.disk_max_used_space_ratio) {
            return Err(invalid(
                "disk_max_used_space_ratio",
                "must be within 0.1..=0.95".into(),
            ));
        }
        if !(1..=1024).contains(&raw.default_topic_queue_nums) {
            return Err(invalid(
                "default_topic_queue_nums",
                "must be within 1..=1024".into(),
            ));
        }
        if raw.max_connections == 0 || raw.max_suspended_pulls_per_queue == 0 {
            return Err(invalid("max_connections", "limits must be positive".into()));
        }
        if raw.max_frame_len < 1024 {
            return Err(invalid("max_frame_len", "must be at least 1024".into()));
        }
        if raw.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0: one less than the CPUs)"),
            ));
        }
        if raw.transaction_check_max < 1 {
            return Err(invalid("transaction_check_max", "must be positive".into()));
        }
        if !(0..=10_000).contains(&raw.max_reconsume_times) {
            return Err(invalid(
                "max_reconsume_times",
                "must be within 0..=10000".into(),
            ));
        }
        let fixed_port = listen.port() > 2;
        let fast_listen_port_enable = match raw.fast_listen_port_enable {
            Some(true) if listen.port() != 0 && !fixed_port => {
                return Err(invalid(
                    "fast_listen_port_enable",
                    format!(
                        "listen port {} leaves no port - 2 for the VIP listener",
                        listen.port()
                    ),
                ));
            }
            Some(enabled) => enabled,
            None => fixed_port,
        };
        let ms = Duration::from_millis;
        Ok(BrokerConfig {
            fast_listen_port_enable,
            broker_cluster_name: non_empty("broker_cluster_name", &raw.broker_cluster_name)?,
            broker_name: non_empty("broker_name", &raw.broker_name)?,
            broker_id: raw.broker_id,
            listen,
            broker_ip,
            namesrv_addrs,
            store_path_root_dir: PathBuf::from(non_empty(
                "store_path_root_dir",
                &raw.store_path_root_dir,
            )?),
            flush_disk_type: raw.flush_disk_type.parse()?,
            mapped_file_size_commit_log: raw.mapped_file_size_commit_log,
            consume_queue_units_per_file: raw.consume_queue_units_per_file,
            max_hash_slot_num: raw.max_hash_slot_num,
            max_index_num: raw.max_index_num,
            max_message_size: raw.max_message_size,
            flush_interval_commit_log: ms(raw.flush_interval_commit_log_ms.max(1)),
            sync_flush_timeout: ms(raw.sync_flush_timeout_ms.max(1)),
            file_reserved_hours: raw.file_reserved_hours,
            delete_when: non_empty("delete_when", &raw.delete_when)?,
            disk_max_used_space_ratio: raw.disk_max_used_space_ratio,
            check_crc_on_recover: raw.check_crc_on_recover,
            auto_create_topic_enable: raw.auto_create_topic_enable,
            default_topic_queue_nums: raw.default_topic_queue_nums,
            auto_create_subscription_group: raw.auto_create_subscription_group,
            long_polling_enable: raw.long_polling_enable,
            short_polling_time: ms(raw.short_polling_time_ms.max(1)),
            enable_property_filter: raw.enable_property_filter,
            register_name_server_period: ms(raw
                .register_name_server_period_ms
                .clamp(10_000, 60_000)),
            broker_heartbeat_timeout: ms(raw.broker_heartbeat_timeout_ms.max(1_000)),
            transaction_timeout: ms(raw.transaction_timeout_ms),
            transaction_check_interval: ms(raw.transaction_check_interval_ms.max(10)),
            transaction_check_max: raw.transaction_check_max,
            message_delay_level: parse_delay_levels(&raw.message_delay_level)?,
            max_reconsume_times: raw.max_reconsume_times,
            timer_max_delay: Duration::from_secs(raw.timer_max_delay_sec),
            max_connections: raw.max_connections,
            max_frame_len: raw.max_frame_len,
            max_suspended_pulls_per_queue: raw.max_suspended_pulls_per_queue,
            channel_expired_timeout: ms(raw.channel_expired_timeout_ms.max(1_000)),
            offset_persist_interval: ms(raw.offset_persist_interval_ms.max(100)),
            lock_max_live_time: ms(raw.lock_max_live_time_ms.max(1_000)),
            worker_threads: match raw.worker_threads {
                0 => default_worker_threads(),
                n => n,
            },
            metrics_listen: match &raw.metrics_listen {
                Some(text) => Some(text.parse().map_err(|_| {
                    invalid(
                        "metrics_listen",
                        format!("`{text}` is not an IP:PORT address"),
                    )
                })?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_file_matches_builtin_defaults() {
        let raw = RawBrokerConfig::from_toml(EMBEDDED_DEFAULT_TOML).expect("embedded file parses");
        assert_eq!(raw, RawBrokerConfig::default());
    }

    #[test]
    fn index_sizes_are_validated_and_passed_through() {
        let small = RawBrokerConfig {
            max_hash_slot_num: 50_000,
            max_index_num: 200_000,
            ..RawBrokerConfig::default()
        };
        let cfg = BrokerConfig::try_from(small).expect("small index sizes are valid");
        assert_eq!(
            (cfg.max_hash_slot_num, cfg.max_index_num),
            (50_000, 200_000)
        );
        for (slots, entries) in [(0, 100), (10, 1), (10, 200_000_000)] {
            let raw = RawBrokerConfig {
                max_hash_slot_num: slots,
                max_index_num: entries,
                ..RawBrokerConfig::default()
            };
            assert!(
                BrokerConfig::try_from(raw).is_err(),
                "{slots} slots / {entries} entries accepted"
            );
        }
    }

    #[test]
    fn worker_threads_default_to_one_less_than_the_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let auto = BrokerConfig::try_from(RawBrokerConfig::default()).expect("default is valid");
        assert_eq!(auto.worker_threads, cpus.saturating_sub(1).max(1));
        let set = |n| RawBrokerConfig {
            worker_threads: n,
            ..RawBrokerConfig::default()
        };
        let three = BrokerConfig::try_from(set(3)).expect("3 workers are valid");
        assert_eq!(three.worker_threads, 3);
        let err = BrokerConfig::try_from(set(MAX_WORKER_THREADS + 1)).expect_err("too many");
        assert!(err.to_string().contains("worker_threads"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(RawBrokerConfig::from_toml("brokr_name = \"x\"").is_err());
    }

    #[test]
    fn delay_levels_parse_with_units() {
        let levels = parse_delay_levels("1s 2m 3h 1d").expect("valid table");
        assert_eq!(
            levels,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(10_800),
                Duration::from_secs(86_400)
            ]
        );
        assert_eq!(
            parse_delay_levels(DEFAULT_MESSAGE_DELAY_LEVEL)
                .expect("default")
                .len(),
            18
        );
        assert!(parse_delay_levels("1x").is_err());
        assert!(parse_delay_levels("").is_err());
        assert!(parse_delay_levels("s").is_err());
    }

    #[test]
    fn validation_rejects_bad_values() {
        let raw = RawBrokerConfig {
            listen: "nope".into(),
            ..Default::default()
        };
        assert!(BrokerConfig::try_from(raw).is_err());
        let raw = RawBrokerConfig {
            namesrv_addr: "a:1;b".into(),
            ..Default::default()
        };
        assert!(BrokerConfig::try_from(raw).is_err());
        let raw = RawBrokerConfig {
            flush_disk_type: "SOMETIMES".into(),
            ..Default::default()
        };
        assert!(BrokerConfig::try_from(raw).is_err());
    }

    #[test]
    fn broker_ip_defaults_to_listen_ip_and_namesrv_list_splits() {
        let raw = RawBrokerConfig {
            listen: "127.0.0.1:0".into(),
            namesrv_addr: "127.0.0.1:9876; 10.0.0.1:9876".into(),
            ..Default::default()
        };
        let config = BrokerConfig::try_from(raw).expect("valid");
        assert_eq!(config.broker_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            config.namesrv_addrs,
            vec!["127.0.0.1:9876", "10.0.0.1:9876"]
        );
        assert!(!BrokerConfig::default().broker_ip.is_unspecified());
    }

    #[test]
    fn vip_listener_defaults_on_for_a_fixed_port_only() {
        let fixed = BrokerConfig::default();
        assert!(fixed.fast_listen_port_enable);
        let bound: SocketAddr = "127.0.0.1:10911".parse().expect("addr");
        assert_eq!(
            fixed.fast_listen_addr(bound),
            Some("127.0.0.1:10909".parse().expect("addr"))
        );
        let any = BrokerConfig::try_from(RawBrokerConfig {
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        })
        .expect("valid");
        assert!(!any.fast_listen_port_enable);
        assert_eq!(
            any.fast_listen_addr("127.0.0.1:40000".parse().expect("addr")),
            None
        );
        let forced = BrokerConfig::try_from(RawBrokerConfig {
            listen: "127.0.0.1:0".into(),
            fast_listen_port_enable: Some(true),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            forced.fast_listen_addr("127.0.0.1:40000".parse().expect("addr")),
            Some("127.0.0.1:39998".parse().expect("addr"))
        );
        assert_eq!(
            forced.fast_listen_addr("127.0.0.1:2".parse().expect("addr")),
            None
        );
        let off = BrokerConfig::try_from(RawBrokerConfig {
            fast_listen_port_enable: Some(false),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(off.fast_listen_addr(bound), None);
        assert!(BrokerConfig::try_from(RawBrokerConfig {
            listen: "127.0.0.1:2".into(),
            fast_listen_port_enable: Some(true),
            ..Default::default()
        })
        .is_err());
    }
}
