//! The daemon's side of `lb_common::maps`: each map opened through its declaration, as the
//! aya handle of its kind with its declared key and value types, so that no map's name or
//! types are written anywhere else in the daemon.
use std::os::fd::AsFd;

use aya::{
    maps::{DevMapHash, HashMap, IterableMap, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf},
    Ebpf, Pod,
};
use lb_common::maps::{kind, MapDecl, MapKind};

/// The aya handle of each kind of map.
pub trait AyaKind: MapKind {
    type Handle<K: Pod, V: Pod>: TryFrom<Map, Error = MapError>;
    /// The `Map` of this kind around a map opened by id or descriptor.
    fn wrap(data: MapData) -> Map;
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData;
}

impl AyaKind for kind::Hash {
    type Handle<K: Pod, V: Pod> = HashMap<MapData, K, V>;
    fn wrap(data: MapData) -> Map {
        Map::HashMap(data)
    }
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData {
        handle.map()
    }
}

impl AyaKind for kind::LruHash {
    type Handle<K: Pod, V: Pod> = HashMap<MapData, K, V>;
    fn wrap(data: MapData) -> Map {
        Map::LruHashMap(data)
    }
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData {
        handle.map()
    }
}

impl AyaKind for kind::LpmTrie {
    type Handle<K: Pod, V: Pod> = LpmTrie<MapData, K, V>;
    fn wrap(data: MapData) -> Map {
        Map::LpmTrie(data)
    }
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData {
        handle.map()
    }
}

impl AyaKind for kind::PerCpuArray {
    type Handle<K: Pod, V: Pod> = PerCpuArray<MapData, V>;
    fn wrap(data: MapData) -> Map {
        Map::PerCpuArray(data)
    }
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData {
        handle.map()
    }
}

impl AyaKind for kind::DevMapHash {
    type Handle<K: Pod, V: Pod> = DevMapHash<MapData>;
    fn wrap(data: MapData) -> Map {
        Map::DevMapHash(data)
    }
    fn data<K: Pod, V: Pod>(handle: &Self::Handle<K, V>) -> &MapData {
        handle.map()
    }
}

/// A declared map the daemon can open: its kind has an aya handle, its key and value are
/// plain old data.
pub trait UserMap: MapDecl<Kind: AyaKind, Key: Pod, Value: Pod> {}

impl<M: MapDecl<Kind: AyaKind, Key: Pod, Value: Pod>> UserMap for M {}

/// The aya handle of the declared map `M`.
pub type Handle<M> = <<M as MapDecl>::Kind as AyaKind>::Handle<<M as MapDecl>::Key, <M as MapDecl>::Value>;

#[derive(Debug, thiserror::Error)]
pub enum KernelMapError {
    #[error("map {name} missing from the object")]
    Missing { name: &'static str },
    #[error("map {name} does not have its declared kind, key or value")]
    Mismatch {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("opening map {name} (id {id})")]
    Open {
        name: &'static str,
        id: u32,
        #[source]
        source: MapError,
    },
    #[error("opening another handle on map {name}")]
    Duplicate {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the kernel id of map {name}")]
    Info {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// Takes the map `M` out of the loaded object.
pub fn take<M: UserMap>(ebpf: &mut Ebpf) -> Result<Handle<M>, KernelMapError> {
    let map = ebpf.take_map(M::NAME).ok_or(KernelMapError::Missing { name: M::NAME })?;
    Handle::<M>::try_from(map).map_err(|source| KernelMapError::Mismatch { name: M::NAME, source })
}

/// Takes the ring buffer `M` out of the loaded object (a ring buffer has no key and no
/// typed handle: its records are read as bytes, `M::Value` each).
pub fn take_ring<M: MapDecl<Kind = kind::RingBuf>>(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, KernelMapError> {
    let map = ebpf.take_map(M::NAME).ok_or(KernelMapError::Missing { name: M::NAME })?;
    RingBuf::try_from(map).map_err(|source| KernelMapError::Mismatch { name: M::NAME, source })
}

/// Opens the map `M` of a running daemon by its kernel id (needs CAP_SYS_ADMIN).
pub fn open_by_id<M: UserMap>(id: u32) -> Result<Handle<M>, KernelMapError> {
    let data = MapData::from_id(id).map_err(|source| KernelMapError::Open { name: M::NAME, id, source })?;
    Handle::<M>::try_from(M::Kind::wrap(data)).map_err(|source| KernelMapError::Mismatch { name: M::NAME, source })
}

/// Another handle on the same kernel map, through a duplicated descriptor: reopening it by
/// id would need CAP_SYS_ADMIN, which the systemd unit does not grant.
pub fn duplicate<M: UserMap>(handle: &Handle<M>) -> Result<Handle<M>, KernelMapError> {
    let fd = M::Kind::data(handle).fd().as_fd().try_clone_to_owned().map_err(|source| KernelMapError::Duplicate { name: M::NAME, source })?;
    let data = MapData::from_fd(fd).map_err(|source| KernelMapError::Mismatch { name: M::NAME, source })?;
    Handle::<M>::try_from(M::Kind::wrap(data)).map_err(|source| KernelMapError::Mismatch { name: M::NAME, source })
}

/// The kernel id of the map behind `handle`.
pub fn id<M: UserMap>(handle: &Handle<M>) -> Result<u32, KernelMapError> {
    Ok(M::Kind::data(handle).info().map_err(|source| KernelMapError::Info { name: M::NAME, source })?.id())
}
