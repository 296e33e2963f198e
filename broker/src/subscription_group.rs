//! [`SubscriptionGroupTable`]: consumer group configurations (RocketMQ
//! `SubscriptionGroupManager`), persisted as `<store>/config/subscriptionGroups`.
//!
//! Groups are auto-created with the defaults of PROTOCOL.md §2.5 on first heartbeat or pull
//! when `auto_create_subscription_group` is on. Every change bumps the data version and is
//! persisted before the call returns.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tern_common::protocol::body::SubscriptionGroupConfig;
use tern_common::route::DataVersion;

use crate::config::BrokerConfig;
use crate::snapshot;
use crate::topic_config::now_ms;

/// File name of the subscription group snapshot under `<store>/config/`.
pub const SUBSCRIPTION_GROUPS_FILE: &str = "subscriptionGroups";

/// The persisted and GET_ALL_SUBSCRIPTIONGROUP_CONFIG form of the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    /// Version of the table.
    pub data_version: DataVersion,
    /// Group name → config.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// The subscription group table of one broker.
#[derive(Debug)]
pub struct SubscriptionGroupTable {
    inner: RwLock<SubscriptionGroupWrapper>,
    path: PathBuf,
    auto_create: bool,
    persist_lock: Mutex<()>,
}

impl SubscriptionGroupTable {
    /// Loads the snapshot (or starts empty).
    ///
    /// # Errors
    /// I/O errors reading the snapshot.
    pub fn load(config: &BrokerConfig) -> io::Result<Self> {
        let path = config.config_dir().join(SUBSCRIPTION_GROUPS_FILE);
        let mut wrapper: SubscriptionGroupWrapper = snapshot::load(&path)?.unwrap_or_default();
        if wrapper.data_version.timestamp == 0 {
            wrapper.data_version = DataVersion::new(now_ms());
        }
        Ok(SubscriptionGroupTable {
            inner: RwLock::new(wrapper),
            path,
            auto_create: config.auto_create_subscription_group,
            persist_lock: Mutex::new(()),
        })
    }

    /// Writes the snapshot atomically.
    ///
    /// # Errors
    /// I/O errors from the write.
    pub fn persist(&self) -> io::Result<()> {
        let _guard = self.persist_lock.lock();
        let snapshot = self.inner.read().clone();
        snapshot::save(&self.path, &snapshot)
    }

    /// The config of `group`, if it exists.
    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.inner
            .read()
            .subscription_group_table
            .get(group)
            .cloned()
    }

    /// The config of `group`, auto-creating it with the §2.5 defaults when allowed.
    /// `None` when the group is unknown and auto-creation is off.
    ///
    /// # Errors
    /// I/O errors persisting a newly created group.
    pub fn find_or_create(&self, group: &str) -> io::Result<Option<SubscriptionGroupConfig>> {
        if let Some(existing) = self.get(group) {
            return Ok(Some(existing));
        }
        if !self.auto_create {
            return Ok(None);
        }
        let created = {
            let mut inner = self.inner.write();
            if let Some(existing) = inner.subscription_group_table.get(group) {
                return Ok(Some(existing.clone()));
            }
            let config = SubscriptionGroupConfig::new(group);
            inner
                .subscription_group_table
                .insert(group.to_string(), config.clone());
            inner.data_version.next_version(now_ms());
            config
        };
        self.persist()?;
        Ok(Some(created))
    }

    /// Inserts or replaces a group config (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
    ///
    /// # Errors
    /// I/O errors from the write.
    pub fn put(&self, config: SubscriptionGroupConfig) -> io::Result<()> {
        {
            let mut inner = self.inner.write();
            inner
                .subscription_group_table
                .insert(config.group_name.clone(), config);
            inner.data_version.next_version(now_ms());
        }
        self.persist()
    }

    /// Removes a group; returns whether it existed.
    ///
    /// # Errors
    /// I/O errors from the write.
    pub fn remove(&self, group: &str) -> io::Result<bool> {
        let removed = {
            let mut inner = self.inner.write();
            let removed = inner.subscription_group_table.remove(group).is_some();
            if removed {
                inner.data_version.next_version(now_ms());
            }
            removed
        };
        if removed {
            self.persist()?;
        }
        Ok(removed)
    }

    /// A copy of the whole table with its version.
    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        self.inner.read().clone()
    }
}
