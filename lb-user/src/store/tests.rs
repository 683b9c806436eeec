use super::*;
use lb_core::model::{Farm, Frontend, Rule, Server, ServiceConfig};

fn frontend(id: u32, port: &str) -> Frontend {
    Frontend { frontend_id: Some(id), port: port.into(), zone: "all".into(), ..Default::default() }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path()).expect("store opens")
}

/// A store with a few commits, closed; returns the file's path.
fn filled_store(dir: &tempfile::TempDir) -> PathBuf {
    let store = open(dir);
    for i in 0..50 {
        store
            .write(|tx| {
                let id = tx.next_id(Kind::Frontend)?;
                tx.insert(id, &Frontend { display_name: Some(format!("frontend number {i} {}", "x".repeat(200))), ..frontend(id, "443") })?;
                tx.bump_pending("local")
            })
            .unwrap();
    }
    store.path().to_path_buf()
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let farm = Farm { farm_id: Some(1), zone: "local".into(), port: Some(8443), ..Default::default() };
    let server = ServerRecord { farm_id: 1, server: Server { server_id: Some(1), address: "10.0.0.1".into(), weight: Some(0), ..Default::default() } };
    let rule = RuleRecord {
        route_id: 4,
        rule: Rule { rule_id: Some(2), field: "protocol".into(), match_: "is".into(), pattern: Some("http/2.0".into()), ..Default::default() },
    };
    let applied = ServiceConfig { frontends: vec![frontend(1, "443")], ..Default::default() };
    store
        .write(|tx| -> Result<(), StoreError> {
            tx.insert(1, &frontend(1, "443"))?;
            tx.insert(1, &farm)?;
            tx.insert(1, &server)?;
            tx.insert(2, &rule)?;
            tx.set_applied("local", &applied)?;
            tx.bump_pending("local")?;
            tx.bump_pending("local")
        })
        .unwrap();
    drop(store);
    let store = open(&dir);
    store
        .read(|tx| -> Result<(), StoreError> {
            assert_eq!(tx.get::<Frontend>(1)?, Some(frontend(1, "443")));
            assert_eq!(tx.get::<Farm>(1)?, Some(farm.clone()));
            assert_eq!(tx.get::<ServerRecord>(1)?.unwrap().server.weight, Some(0), "weight 0 stays 0");
            assert_eq!(tx.all::<RuleRecord>()?, vec![(2, rule.clone())]);
            assert_eq!(tx.applied("local")?, Some(applied.clone()));
            assert_eq!(tx.applied("other")?, None);
            assert_eq!(tx.pending()?.get("local"), Some(&2));
            Ok(())
        })
        .unwrap();
}

#[test]
fn ids_start_at_one_and_are_never_reused_even_after_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ids: Vec<u32> = (0..3).map(|_| store.write(|tx| tx.next_id(Kind::Route)).unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    store.write(|tx| tx.next_id(Kind::Frontend)).unwrap();
    assert_eq!(store.write(|tx| tx.next_id(Kind::Farm)).unwrap(), 1, "each kind counts on its own");
    store
        .write(|tx| {
            tx.insert(3, &lb_core::model::Route::default())?;
            tx.remove::<lb_core::model::Route>(3)
        })
        .unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(store.write(|tx| tx.next_id(Kind::Route)).unwrap(), 4);
    store.write(|tx| tx.reserve_ids(Kind::Route, 10)).unwrap();
    assert_eq!(store.write(|tx| tx.next_id(Kind::Route)).unwrap(), 11);
    store.write(|tx| tx.reserve_ids(Kind::Route, 5)).unwrap();
    assert_eq!(store.write(|tx| tx.next_id(Kind::Route)).unwrap(), 12, "reserving never lowers the counter");
}

#[test]
fn a_failed_write_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let result: Result<(), StoreError> = store.write(|tx| {
        let id = tx.next_id(Kind::Frontend)?;
        tx.insert(id, &frontend(id, "443"))?;
        tx.bump_pending("local")?;
        Err(StoreError::IdsExhausted("test"))
    });
    assert!(result.is_err());
    store
        .read(|tx| -> Result<(), StoreError> {
            assert!(tx.all::<Frontend>()?.is_empty());
            assert!(tx.pending()?.is_empty());
            Ok(())
        })
        .unwrap();
    assert_eq!(store.write(|tx| tx.next_id(Kind::Frontend)).unwrap(), 1, "the aborted id was not consumed");
}

#[test]
fn an_empty_file_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"").unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("empty") && err.contains(FILE_NAME), "{err}");
}

#[test]
fn a_truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(&dir);
    let len = std::fs::metadata(&path).unwrap().len();
    for keep in [len / 2, 4096, 100] {
        let bytes = std::fs::read(&path).unwrap();
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(FILE_NAME), &bytes[..keep as usize]).unwrap();
        let err = Store::open(copy.path()).err().unwrap_or_else(|| panic!("a file cut to {keep} of {len} bytes opened")).to_string();
        assert!(err.contains(FILE_NAME), "{err}");
    }
}

#[test]
fn a_corrupted_file_is_an_error_or_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(&dir);
    let original = std::fs::read(&path).unwrap();
    // Damage 4 KiB pages in turn (the headers, then a sample through the file): the store
    // must either refuse to open, or open with its records readable (redb may fall back to
    // its previous commit); never empty.
    let pages = original.len() / 4096;
    for page in (0..4).chain((4..pages).step_by(29)) {
        let mut bytes = original.clone();
        for b in &mut bytes[page * 4096 + 64..page * 4096 + 128] {
            *b ^= 0x5a;
        }
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(FILE_NAME), &bytes).unwrap();
        match Store::open(copy.path()) {
            Err(e) => assert!(e.to_string().contains(FILE_NAME), "{e}"),
            Ok(store) => {
                let frontends = store.read(|tx| tx.all::<Frontend>());
                let frontends = frontends.unwrap_or_else(|e| panic!("page {page}: opened but unreadable: {e}"));
                assert!(frontends.len() >= 49, "page {page}: only {} of 50 frontends after damage", frontends.len());
            }
        }
    }
}

#[test]
fn a_redb_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    redb::Database::create(dir.path().join(FILE_NAME)).unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("format"), "{err}");
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir);
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("already open"), "{err}");
}

#[test]
fn in_memory_store_reads_back_what_it_wrote() {
    let store = Store::in_memory().unwrap();
    let id = store
        .write(|tx| -> Result<u32, StoreError> {
            let id = tx.next_id(Kind::Frontend)?;
            tx.insert(id, &frontend(id, "443"))?;
            Ok(id)
        })
        .unwrap();
    assert_eq!(id, 1);
    let back: Option<Frontend> = store.read(|tx| tx.get(id)).unwrap();
    assert_eq!(back.unwrap().port, "443");
}
