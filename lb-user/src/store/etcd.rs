//! The store in etcd (`--store etcd://HOST:PORT[,HOST:PORT…]/PREFIX`), shared by every node of
//! a zone. A transaction reads one snapshot of the store's keys and commits its writes in one
//! etcd transaction that also rewrites the `serial` key, on condition that `serial` is still
//! the one the snapshot saw: two nodes never interleave a read-modify-write. A commit that
//! loses the race is run again on a fresh snapshot, unless an object it read or changed was
//! changed meanwhile: then it fails with a conflict (HTTP 409), never overwriting the other.
//!
//! The daemon's own calls run on a small runtime of their own, so that the synchronous store
//! API can wait for them from any thread, async workers included, without starving them.
use std::{
    future::Future,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

use super::{
    kv::{Entry, Keys, KvTx, Snapshot},
    StoreError, FORMAT,
};

/// How long one etcd request may take before the store is called unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the store is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// `host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix of this service (`/lb`): `PREFIX/store/…`, `PREFIX/nodes/…`.
    pub prefix: String,
    /// CA certificate (PEM) that signed the members' certificates: connects with TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for members that require them.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd user name and the file holding its password.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl EtcdOptions {
    /// Parses `etcd://HOST:PORT[,HOST:PORT…]/PREFIX`; the errors name the part that is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| format!("--store {url:?}: expected etcd://HOST:PORT[,HOST:PORT…]/PREFIX"))?;
        let (hosts, prefix) = rest.split_once('/').ok_or_else(|| format!("--store {url:?}: the key prefix is missing (etcd://HOST:PORT/PREFIX)"))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("--store {url:?}: the key prefix must be a non-empty path without spaces"));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host.rsplit_once(':').ok_or_else(|| format!("--store {url:?}: {host:?} is not HOST:PORT"))?;
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("--store {url:?}: {host:?} is not HOST:PORT"));
            }
            endpoints.push(host.to_string());
        }
        Ok(Self { endpoints, prefix: format!("/{}", prefix.trim_start_matches('/')), ..Self::default() })
    }

    fn scheme(&self) -> &'static str {
        if self.ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `etcd://a:2379,b:2379/lb`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd://{}{}", self.endpoints.join(","), self.prefix)
    }

    fn connect_options(&self) -> Result<ConnectOptions, String> {
        let read = |flag: &str, path: &PathBuf| std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()));
        let mut options =
            ConnectOptions::new().with_connect_timeout(REQUEST_TIMEOUT).with_timeout(REQUEST_TIMEOUT).with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT);
        if let Some(ca) = &self.ca {
            let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read("--store-ca", ca)?));
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => tls = tls.identity(etcd_client::Identity::from_pem(read("--store-cert", cert)?, read("--store-key", key)?)),
                (None, None) => {}
                _ => return Err("--store-cert and --store-key go together".into()),
            }
            options = options.with_tls(tls);
        } else if self.cert.is_some() || self.key.is_some() {
            return Err("--store-cert and --store-key need --store-ca (they are for TLS)".into());
        }
        match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password = String::from_utf8(read("--store-password-file", file)?).map_err(|_| "--store-password-file: not UTF-8".to_string())?;
                options = options.with_user(user.clone(), password.trim_end_matches(['\r', '\n']).to_string());
            }
            (None, None) => {}
            _ => return Err("--store-user and --store-password-file go together".into()),
        }
        Ok(options)
    }
}

/// The etcd client's own runtime. Dropping a runtime blocks, which an async worker may not
/// do (the store can be dropped, or fail to connect, on one): it is shut down in the
/// background instead.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives as long as its owner")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A connection to the store's etcd.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    options: EtcdOptions,
    runtime: OwnRuntime,
    /// Whether the last request got an answer.
    reachable: AtomicBool,
    /// Whether the format mark was checked (a node that started while etcd was unreachable
    /// checks it on its first answered read).
    format_checked: AtomicBool,
}

fn unavailable(options: &EtcdOptions, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", options.describe()))
}

impl EtcdStore {
    /// Connects and checks (or, on a new prefix, writes) the store's format mark. With
    /// `unreachable_ok`, etcd not answering is no error: the store answers 503 until it does.
    pub fn connect(options: EtcdOptions, unreachable_ok: bool) -> Result<Self, StoreError> {
        let connect_options = options.connect_options().map_err(|e| StoreError::Open { path: options.describe().into(), message: e })?;
        // Connections are made on first use: an etcd that is down fails the first request,
        // not this.
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("lb-etcd")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Open { path: options.describe().into(), message: format!("starting the etcd client's runtime: {e}") })?,
        ));
        let endpoints: Vec<String> = options.endpoints.iter().map(|e| format!("{}://{e}", options.scheme())).collect();
        // Not `block_on`: the caller may be an async worker of another runtime.
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        runtime.get().spawn(async move {
            done.send(tokio::time::timeout(REQUEST_TIMEOUT * 2, Client::connect(endpoints, Some(connect_options))).await).ok();
        });
        let at_start = |message: String| StoreError::Open { path: options.describe().into(), message: format!("cannot start from it: {message}") };
        let client = answer
            .recv_timeout(REQUEST_TIMEOUT * 3)
            .map_err(|_| at_start("no member answered in time".into()))?
            .map_err(|_| at_start("no member answered in time".into()))?
            .map_err(|e| at_start(e.to_string()))?;
        let store = Self {
            client,
            keys: Keys::new(&options.prefix),
            options: options.clone(),
            runtime,
            reachable: AtomicBool::new(true),
            format_checked: AtomicBool::new(false),
        };
        match store.init_format() {
            Ok(()) => {}
            Err(StoreError::Unavailable(message)) if unreachable_ok => {
                tracing::warn!(store = %options.describe(), error = %message, "etcd is unreachable: starting anyway");
            }
            Err(StoreError::Unavailable(message)) => return Err(at_start(message)),
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    fn init_format(&self) -> Result<(), StoreError> {
        let key = self.keys.format();
        let mut kv = self.client.kv_client();
        let (k, mark) = (key.clone(), FORMAT.to_string());
        let created = self.run(async move {
            let txn = Txn::new().when([Compare::version(k.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(k, mark, None)]);
            kv.txn(txn).await
        })?;
        if created.succeeded() {
            tracing::info!(store = %self.options.describe(), "created an empty store in etcd");
            self.format_checked.store(true, Relaxed);
            return Ok(());
        }
        let mut kv = self.client.kv_client();
        let found = self.run(async move { kv.get(key, None).await })?;
        let value = found.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()).unwrap_or_default();
        if value == FORMAT.to_string() {
            self.format_checked.store(true, Relaxed);
            Ok(())
        } else {
            Err(StoreError::Open {
                path: self.options.describe().into(),
                message: format!("format {value:?} is not the one this build reads ({FORMAT}); is another program using this prefix?"),
            })
        }
    }

    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A client for the cluster's own keys (membership, watches).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Whether the last request to etcd got an answer.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    /// Runs one etcd request on the store's runtime and waits for it, at most
    /// [`REQUEST_TIMEOUT`] (plus a margin): the store's own requests and the cluster's
    /// (membership lists) alike.
    pub fn run<T: Send + 'static>(&self, request: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static) -> Result<T, StoreError> {
        let runtime = self.runtime.get();
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
            done.send(outcome).ok();
        });
        let outcome = match answer.recv_timeout(REQUEST_TIMEOUT + Duration::from_secs(1)) {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(unavailable(&self.options, e)),
            Ok(Err(_)) | Err(_) => Err(unavailable(&self.options, format!("no answer within {REQUEST_TIMEOUT:?}"))),
        };
        self.reachable.store(outcome.is_ok(), Relaxed);
        outcome
    }

    /// Every store key, at one revision.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        if !self.format_checked.load(Relaxed) {
            self.init_format()?;
        }
        let mut kv = self.client.kv_client();
        let root = self.keys.root().to_string();
        let response = self.run(async move { kv.get(root, Some(GetOptions::new().with_prefix())).await })?;
        let mut snapshot = Snapshot::default();
        for item in response.kvs() {
            let key = String::from_utf8_lossy(item.key()).into_owned();
            snapshot.entries.insert(key, Entry { value: item.value().to_vec(), mod_revision: item.mod_revision() });
        }
        Ok(snapshot)
    }

    /// Commits `tx`'s writes if nothing was committed since its snapshot; false when
    /// something was (the caller retries or reports the conflict).
    pub fn commit(&self, tx: &KvTx) -> Result<bool, StoreError> {
        if tx.writes().is_empty() {
            return Ok(true);
        }
        let serial = self.keys.serial();
        let seen = tx.snapshot().mod_revision(&serial);
        let mut ops: Vec<TxnOp> = tx
            .writes()
            .iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(key.clone(), value.clone(), None),
                None => TxnOp::delete(key.clone(), None),
            })
            .collect();
        ops.push(TxnOp::put(serial.clone(), Vec::new(), None));
        let txn = Txn::new().when([Compare::mod_revision(serial, CompareOp::Equal, seen)]).and_then(ops);
        let mut kv = self.client.kv_client();
        Ok(self.run(async move { kv.txn(txn).await })?.succeeded())
    }

    /// The revision at which `key` was last changed (0: never), for a refresh to name the
    /// applied configuration every node must reach.
    pub fn mod_revision(&self, key: String) -> Result<i64, StoreError> {
        let mut kv = self.client.kv_client();
        let response = self.run(async move { kv.get(key, None).await })?;
        Ok(response.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }
}

/// Shared handle: the cluster's tasks hold one beside the store.
pub type SharedEtcd = Arc<EtcdStore>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_name_what_is_wrong() {
        let o = EtcdOptions::parse("etcd://10.0.0.1:2379,etcd-b:2379/lb/prod/").unwrap();
        assert_eq!(o.endpoints, ["10.0.0.1:2379", "etcd-b:2379"]);
        assert_eq!(o.prefix, "/lb/prod");
        assert_eq!(o.describe(), "etcd://10.0.0.1:2379,etcd-b:2379/lb/prod");
        for (url, says) in [
            ("http://a:1/x", "expected etcd://"),
            ("etcd://a:1", "prefix is missing"),
            ("etcd://a:1/", "non-empty"),
            ("etcd://a/x", "is not HOST:PORT"),
            ("etcd://a:0/x", "is not HOST:PORT"),
            ("etcd://a:1,:2/x", "is not HOST:PORT"),
        ] {
            let err = EtcdOptions::parse(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
