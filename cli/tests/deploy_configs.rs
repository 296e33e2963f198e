//! The configuration files shipped in `deploy/` must load.
//!
//! Goal: an operator who copies a profile from `deploy/profiles/` gets a broker that starts
//! with the settings the file's comments promise. Method: parse every file with the servers'
//! own two-stage config loaders (raw TOML with unknown keys rejected, then validation) and
//! check the values that define each profile.

use std::path::PathBuf;

use tern_broker::config::{BrokerConfig, FlushDiskType, RawBrokerConfig};
use tern_nameserver::{NameServerConfig, RawNameServerConfig};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn broker_profile(name: &str) -> BrokerConfig {
    let path = deploy_dir().join("profiles").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let raw = RawBrokerConfig::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    BrokerConfig::try_from(raw).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_broker_profile_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(deploy_dir().join("profiles")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            broker_profile(&name);
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "expected the four shipped profiles, found {seen}"
    );
}

#[test]
fn profiles_say_what_their_names_promise() {
    let single = broker_profile("single-node.toml");
    assert_eq!(single.flush_disk_type, FlushDiskType::AsyncFlush);
    assert_eq!(single.namesrv_addrs, vec!["127.0.0.1:9876".to_string()]);

    let sync = broker_profile("sync-flush.toml");
    assert_eq!(sync.flush_disk_type, FlushDiskType::SyncFlush);
    assert!(!sync.auto_create_topic_enable);

    let a = broker_profile("two-brokers-a.toml");
    let b = broker_profile("two-brokers-b.toml");
    assert_eq!(a.broker_cluster_name, b.broker_cluster_name);
    assert_ne!(a.broker_name, b.broker_name);
    assert_ne!(a.store_path_root_dir, b.store_path_root_dir);
    assert_ne!(a.broker_ip, b.broker_ip);
    assert_eq!(a.namesrv_addrs.len(), 2);
    assert_eq!(a.namesrv_addrs, b.namesrv_addrs);
}

#[test]
fn shipped_default_files_load() {
    let text = std::fs::read_to_string(deploy_dir().join("nameserver.toml")).unwrap();
    let ns = NameServerConfig::try_from(RawNameServerConfig::from_toml_str(&text).unwrap());
    assert_eq!(ns.unwrap().listen.port(), 9876);
    let text = std::fs::read_to_string(deploy_dir().join("broker.toml")).unwrap();
    let broker = BrokerConfig::try_from(RawBrokerConfig::from_toml(&text).unwrap()).unwrap();
    assert_eq!(broker.listen.port(), 10911);
    assert_eq!(broker.metrics_listen, None, "metrics are off by default");
}
