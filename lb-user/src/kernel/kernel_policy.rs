//! The frontends' source ACLs in the kernel maps: what a configuration writes there, and
//! writing it so that a SYN is always judged by one whole configuration, never a mix.
//!
//! Each apply writes its ACL entries under fresh ACL ids, then switches the frontends to
//! them, then deletes the previous entries (and the frontends that went away). A failed
//! write rolls back what this apply wrote: the previous configuration stays in force whole.
//! The maps sit behind [`PolicyMaps`], so this logic is tested without a kernel.
use std::{collections::HashMap, net::IpAddr};

use aya::maps::{lpm_trie::Key, MapError};
use ipnet::IpNet;
use lb_common::{
    addr::addr_bytes,
    maps::{AclV4Map, AclV6Map, FrontendsMap},
    AclV4, AclV6, FrontendKey, FrontendPolicy, ACL_ID_BITS,
};

use crate::kernel::kernel_map::{self, Handle, KernelMapError};

/// An entry of the ACL tries: its prefix length (the ACL id's bits included) and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclEntry {
    V4 { prefix_len: u32, data: AclV4 },
    V6 { prefix_len: u32, data: AclV6 },
}

impl AclEntry {
    fn new(acl_id: u32, net: &IpNet) -> Self {
        let acl_id = acl_id.to_be_bytes();
        match net {
            IpNet::V4(v4) => AclEntry::V4 { prefix_len: ACL_ID_BITS + u32::from(v4.prefix_len()), data: AclV4 { acl_id, addr: v4.network().octets() } },
            IpNet::V6(v6) => AclEntry::V6 { prefix_len: ACL_ID_BITS + u32::from(v6.prefix_len()), data: AclV6 { acl_id, addr: v6.network().octets() } },
        }
    }
}

/// One frontend's part of the kernel policy.
#[derive(Debug, Clone, Copy)]
pub struct FrontendAcl<'a> {
    pub id: u32,
    /// Empty: every address of the host, IPv4 and IPv6.
    pub addresses: &'a [IpAddr],
    pub ports: &'a [u16],
    /// One of `lb_common::acl_mode`.
    pub mode: u8,
    pub nets: &'a [IpNet],
}

/// The maps a policy is written to: the kernel's ([`KernelPolicyMaps`]), or a test's.
pub trait PolicyMaps {
    fn insert_acl(&mut self, entry: &AclEntry) -> Result<(), MapError>;
    fn remove_acl(&mut self, entry: &AclEntry) -> Result<(), MapError>;
    fn insert_frontend(&mut self, key: &FrontendKey, policy: &FrontendPolicy) -> Result<(), MapError>;
    fn remove_frontend(&mut self, key: &FrontendKey) -> Result<(), MapError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("ACL entry {net} of frontend {frontend}")]
    AclEntry {
        frontend: u32,
        net: IpNet,
        #[source]
        source: MapError,
    },
    #[error("frontend {frontend} policy")]
    Frontend {
        frontend: u32,
        #[source]
        source: MapError,
    },
}

/// What the kernel maps hold of the applied configuration.
#[derive(Default)]
struct Written {
    frontends: HashMap<FrontendKey, FrontendPolicy>,
    acl: Vec<AclEntry>,
}

/// The policy in force, and the next ACL id to write under.
pub struct KernelPolicy {
    applied: Written,
    next_acl_id: u32,
}

impl Default for KernelPolicy {
    fn default() -> Self {
        Self { applied: Written::default(), next_acl_id: 1 }
    }
}

impl KernelPolicy {
    /// Writes the frontends' listening addresses and source ACLs, replacing the policy in
    /// force; on error, the policy in force stays as it was.
    pub fn apply(&mut self, maps: &mut impl PolicyMaps, frontends: &[FrontendAcl<'_>]) -> Result<(), PolicyError> {
        let mut next = Written::default();
        if let Err(e) = self.write(maps, frontends, &mut next) {
            self.roll_back(maps, &next);
            return Err(e);
        }
        let previous = std::mem::replace(&mut self.applied, next);
        for key in previous.frontends.keys().filter(|k| !self.applied.frontends.contains_key(k)) {
            maps.remove_frontend(key).ok();
        }
        remove_acl_entries(maps, &previous);
        Ok(())
    }

    /// Writes the ACL entries of every frontend, then the frontends' policies, recording in
    /// `next` what it wrote so far.
    fn write(&mut self, maps: &mut impl PolicyMaps, frontends: &[FrontendAcl<'_>], next: &mut Written) -> Result<(), PolicyError> {
        let mut policies = Vec::new();
        for frontend in frontends.iter().filter(|f| !f.ports.is_empty()) {
            let acl_id = self.next_acl_id;
            self.next_acl_id = self.next_acl_id.wrapping_add(1).max(1);
            for net in frontend.nets {
                let entry = AclEntry::new(acl_id, net);
                maps.insert_acl(&entry).map_err(|source| PolicyError::AclEntry { frontend: frontend.id, net: *net, source })?;
                next.acl.push(entry);
            }
            let policy = FrontendPolicy { frontend_id: frontend.id, acl_id, acl_mode: frontend.mode, _pad: [0; 7] };
            policies.extend(frontend_keys(frontend.addresses, frontend.ports).into_iter().map(|key| (key, policy)));
        }
        // Only now, with every ACL entry in place, do frontends switch to the new ones.
        for (key, policy) in policies {
            next.frontends.insert(key, policy);
            maps.insert_frontend(&key, &policy).map_err(|source| PolicyError::Frontend { frontend: policy.frontend_id, source })?;
        }
        Ok(())
    }

    /// Undoes a partly written `next`: the previous policies come back, so a SYN is never
    /// judged by half a configuration.
    fn roll_back(&self, maps: &mut impl PolicyMaps, next: &Written) {
        for key in next.frontends.keys() {
            match self.applied.frontends.get(key) {
                Some(previous) => maps.insert_frontend(key, previous).ok(),
                None => maps.remove_frontend(key).ok(),
            };
        }
        remove_acl_entries(maps, next);
    }
}

fn remove_acl_entries(maps: &mut impl PolicyMaps, written: &Written) {
    for entry in &written.acl {
        maps.remove_acl(entry).ok();
    }
}

fn frontend_keys(addresses: &[IpAddr], ports: &[u16]) -> Vec<FrontendKey> {
    let wildcard = [IpAddr::from([0u8; 4]), IpAddr::from([0u8; 16])];
    let addrs: &[IpAddr] = if addresses.is_empty() { &wildcard } else { addresses };
    let mut keys = Vec::with_capacity(addrs.len() * ports.len());
    for addr in addrs {
        let (bytes, family) = addr_bytes(*addr);
        for port in ports {
            keys.push(FrontendKey { addr: bytes, port: port.to_be(), family, _pad: 0 });
        }
    }
    keys
}

/// The kernel programs' frontend and ACL maps.
pub struct KernelPolicyMaps {
    frontends: Handle<FrontendsMap>,
    acl_v4: Handle<AclV4Map>,
    acl_v6: Handle<AclV6Map>,
}

impl KernelPolicyMaps {
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, KernelMapError> {
        Ok(Self {
            frontends: kernel_map::take::<FrontendsMap>(ebpf)?,
            acl_v4: kernel_map::take::<AclV4Map>(ebpf)?,
            acl_v6: kernel_map::take::<AclV6Map>(ebpf)?,
        })
    }

    /// Kernel ids of the frontend map and the two ACL tries.
    pub fn ids(&self) -> Result<[u32; 3], KernelMapError> {
        Ok([kernel_map::id::<FrontendsMap>(&self.frontends)?, kernel_map::id::<AclV4Map>(&self.acl_v4)?, kernel_map::id::<AclV6Map>(&self.acl_v6)?])
    }
}

impl PolicyMaps for KernelPolicyMaps {
    fn insert_acl(&mut self, entry: &AclEntry) -> Result<(), MapError> {
        match *entry {
            AclEntry::V4 { prefix_len, data } => self.acl_v4.insert(&Key::new(prefix_len, data), 1, 0),
            AclEntry::V6 { prefix_len, data } => self.acl_v6.insert(&Key::new(prefix_len, data), 1, 0),
        }
    }

    fn remove_acl(&mut self, entry: &AclEntry) -> Result<(), MapError> {
        match *entry {
            AclEntry::V4 { prefix_len, data } => self.acl_v4.remove(&Key::new(prefix_len, data)),
            AclEntry::V6 { prefix_len, data } => self.acl_v6.remove(&Key::new(prefix_len, data)),
        }
    }

    fn insert_frontend(&mut self, key: &FrontendKey, policy: &FrontendPolicy) -> Result<(), MapError> {
        self.frontends.insert(key, policy, 0)
    }

    fn remove_frontend(&mut self, key: &FrontendKey) -> Result<(), MapError> {
        self.frontends.remove(key)
    }
}

#[cfg(test)]
mod tests;
