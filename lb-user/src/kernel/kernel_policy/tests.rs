use std::collections::{HashMap, HashSet};

use aya::{maps::MapError, sys::SyscallError};
use lb_common::{acl_mode, FAMILY_V4, FAMILY_V6};

use super::*;

/// The maps in memory, with one insert that fails on demand (the n-th from now; the
/// inserts after it succeed, as overwriting an existing entry does in the kernel).
#[derive(Default, Clone, PartialEq, Debug)]
struct Maps {
    acl: HashSet<AclKey>,
    frontends: HashMap<FrontendKey, FrontendPolicy>,
    fail_after: Option<usize>,
}

/// `AclEntry` is not `Hash` (the key types are plain arrays): compare by bytes.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct AclKey(u32, Vec<u8>);

fn acl_key(entry: &AclEntry) -> AclKey {
    match entry {
        AclEntry::V4 { prefix_len, data } => AclKey(*prefix_len, [&data.acl_id[..], &data.addr[..]].concat()),
        AclEntry::V6 { prefix_len, data } => AclKey(*prefix_len, [&data.acl_id[..], &data.addr[..]].concat()),
    }
}

impl Maps {
    fn inserting(&mut self) -> Result<(), MapError> {
        match self.fail_after {
            Some(0) => {
                self.fail_after = None;
                Err(MapError::SyscallError(SyscallError { call: "bpf_map_update_elem", io_error: std::io::Error::from_raw_os_error(libc::E2BIG) }))
            }
            Some(ref mut n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn contents(&self) -> (HashSet<AclKey>, HashMap<FrontendKey, FrontendPolicy>) {
        (self.acl.clone(), self.frontends.clone())
    }
}

impl PolicyMaps for Maps {
    fn insert_acl(&mut self, entry: &AclEntry) -> Result<(), MapError> {
        self.inserting()?;
        self.acl.insert(acl_key(entry));
        Ok(())
    }

    fn remove_acl(&mut self, entry: &AclEntry) -> Result<(), MapError> {
        self.acl.remove(&acl_key(entry)).then_some(()).ok_or(MapError::KeyNotFound)
    }

    fn insert_frontend(&mut self, key: &FrontendKey, policy: &FrontendPolicy) -> Result<(), MapError> {
        self.inserting()?;
        self.frontends.insert(*key, *policy);
        Ok(())
    }

    fn remove_frontend(&mut self, key: &FrontendKey) -> Result<(), MapError> {
        self.frontends.remove(key).map(drop).ok_or(MapError::KeyNotFound)
    }
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

fn key(addr: &str, port: u16) -> FrontendKey {
    let (bytes, family) = addr_bytes(addr.parse().unwrap());
    FrontendKey { addr: bytes, port: port.to_be(), family, _pad: 0 }
}

#[test]
fn a_frontend_on_every_address_gets_both_wildcards_and_its_acl() {
    let (mut maps, mut policy) = (Maps::default(), KernelPolicy::default());
    let nets = nets(&["10.0.0.0/8", "2001:db8::/32"]);
    let frontends = [FrontendAcl { id: 7, addresses: &[], ports: &[443, 8443], mode: acl_mode::ALLOW, nets: &nets }];
    policy.apply(&mut maps, &frontends).unwrap();

    assert_eq!(maps.frontends.len(), 4);
    let wildcard_v4 = maps.frontends[&key("0.0.0.0", 443)];
    assert_eq!((wildcard_v4.frontend_id, wildcard_v4.acl_id, wildcard_v4.acl_mode), (7, 1, acl_mode::ALLOW));
    assert_eq!(maps.frontends[&key("::", 8443)].acl_id, 1);
    assert_eq!(key("::", 8443).family, FAMILY_V6);
    assert_eq!(key("0.0.0.0", 8443).family, FAMILY_V4);
    let mut expected = HashSet::new();
    expected.insert(AclKey(32 + 8, vec![0, 0, 0, 1, 10, 0, 0, 0]));
    expected.insert(AclKey(32 + 32, [&[0, 0, 0, 1][..], &"2001:db8::".parse::<std::net::Ipv6Addr>().unwrap().octets()[..]].concat()));
    assert_eq!(maps.acl, expected);
}

#[test]
fn a_frontend_without_ports_writes_nothing() {
    let (mut maps, mut policy) = (Maps::default(), KernelPolicy::default());
    let nets = nets(&["10.0.0.0/8"]);
    policy.apply(&mut maps, &[FrontendAcl { id: 1, addresses: &[], ports: &[], mode: acl_mode::DENY, nets: &nets }]).unwrap();
    assert_eq!(maps, Maps::default());
}

#[test]
fn a_new_configuration_replaces_entries_and_drops_gone_frontends() {
    let (mut maps, mut policy) = (Maps::default(), KernelPolicy::default());
    let first_nets = nets(&["10.0.0.0/8"]);
    let addr: [IpAddr; 1] = ["192.0.2.1".parse().unwrap()];
    policy
        .apply(
            &mut maps,
            &[
                FrontendAcl { id: 1, addresses: &addr, ports: &[443], mode: acl_mode::DENY, nets: &first_nets },
                FrontendAcl { id: 2, addresses: &addr, ports: &[80], mode: acl_mode::NONE, nets: &[] },
            ],
        )
        .unwrap();
    let second_nets = nets(&["192.168.0.0/16"]);
    policy.apply(&mut maps, &[FrontendAcl { id: 1, addresses: &addr, ports: &[443], mode: acl_mode::ALLOW, nets: &second_nets }]).unwrap();

    assert_eq!(maps.frontends.len(), 1, "frontend 2 is gone");
    let now = maps.frontends[&key("192.0.2.1", 443)];
    assert_eq!((now.acl_id, now.acl_mode), (3, acl_mode::ALLOW), "fresh ACL id (1 and 2 went to the first apply)");
    assert_eq!(maps.acl, HashSet::from([AclKey(32 + 16, vec![0, 0, 0, 3, 192, 168, 0, 0])]), "the previous entries are deleted");
}

#[test]
fn a_failed_frontend_write_rolls_back_to_the_previous_configuration() {
    let (mut maps, mut policy) = (Maps::default(), KernelPolicy::default());
    let addr: [IpAddr; 1] = ["192.0.2.1".parse().unwrap()];
    let old_nets = nets(&["10.0.0.0/8"]);
    policy.apply(&mut maps, &[FrontendAcl { id: 1, addresses: &addr, ports: &[443], mode: acl_mode::DENY, nets: &old_nets }]).unwrap();
    let before = maps.contents();

    // Two ACL entries go in, then the first frontend key, then the second fails.
    maps.fail_after = Some(3);
    let new_nets = nets(&["172.16.0.0/12", "2001:db8::/32"]);
    let err = policy.apply(&mut maps, &[FrontendAcl { id: 1, addresses: &addr, ports: &[443, 8443], mode: acl_mode::ALLOW, nets: &new_nets }]).unwrap_err();
    assert!(matches!(err, PolicyError::Frontend { frontend: 1, .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "the map error is kept as the cause");
    assert_eq!(maps.contents(), before, "the previous policy is in force, whole");

    // The policy in force is still the first one: the next apply replaces it cleanly.
    policy.apply(&mut maps, &[]).unwrap();
    assert_eq!(maps.contents(), (HashSet::new(), HashMap::new()));
}

#[test]
fn a_failed_acl_write_leaves_no_entry_behind() {
    let (mut maps, mut policy) = (Maps::default(), KernelPolicy::default());
    maps.fail_after = Some(1);
    let nets = nets(&["10.0.0.0/8", "10.1.0.0/16"]);
    let err = policy.apply(&mut maps, &[FrontendAcl { id: 4, addresses: &[], ports: &[443], mode: acl_mode::ALLOW, nets: &nets }]).unwrap_err();
    assert_eq!(err.to_string(), "ACL entry 10.1.0.0/16 of frontend 4");
    assert_eq!(maps.contents(), (HashSet::new(), HashMap::new()));
}
