//! The agent store contract: one suite, generic over the store, run
//! against the in-memory store (supervision-core), the SQLite store and
//! the PostgreSQL store (a schema of its own on the tests' server: see
//! `support/mod.rs`);
//! then what only a file can show: a `kill -9` crash, corrupt rows, a
//! newer record version, a full disk, foreign files, and the property
//! that any sequence of writes, replayed from the file, gives the same
//! table as in memory.
//!
//! The crash child is this test binary run again with `AGENT_CRASH_DIR`
//! set, running only [`crash_child`].

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt};
use mabeam_foundation_services::{
    PostgresAgentStore, Renewal, SqliteAgentStore, SqliteAgentStoreConfig,
};
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentRegistration, AgentStatus, AgentStore, AgentStoreError, AgentUpdate,
    AgentWrite, Checkpoint, ErrorCode, LoadedAgent, MemoryAgentStore,
    cluster::{Claim, MemoryOwnership, Ownership, OwnershipError},
};
use proptest::prelude::*;
use serde_json::json;

mod support;

/// Fails the test if `future` takes longer than a minute.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Opens the store under test on its storage: a second call after the
/// first store was dropped sees what the first acknowledged.
type Open = Box<dyn Fn() -> BoxFuture<'static, Arc<dyn AgentStore>>>;

fn registration(id: &str, n: u64) -> AgentRegistration {
    AgentRegistration {
        args: json!({"start": n}),
        restart: json!({"type": "permanent", "max_restarts": 3}),
        ..AgentRegistration::new(id, "counter", json!({"step": n}))
    }
}

/// Every record, read page by page.
async fn load_all(store: &dyn AgentStore, page: usize) -> Vec<LoadedAgent> {
    let mut all = Vec::new();
    let mut after: Option<AgentId> = None;
    loop {
        let batch = within("load_page", store.load_page(after.as_ref(), page))
            .await
            .expect("load_page");
        let last = batch.len() < page;
        after = batch.last().map(|l| l.id.clone());
        all.extend(batch);
        if last {
            return all;
        }
    }
}

async fn table_of(store: &dyn AgentStore) -> BTreeMap<AgentId, AgentRecord> {
    load_all(store, 7)
        .await
        .into_iter()
        .map(|l| (l.id, l.record.expect("a readable record")))
        .collect()
}

// ---- The contract suite -------------------------------------------------

/// Every acknowledged write is found after the store is dropped and
/// opened again, paged or one by one.
async fn acknowledged_writes_survive_a_reopen(open: &Open) {
    let store = open().await;
    let mut expected = BTreeMap::new();
    let writes: Vec<AgentWrite> = (0..200u64)
        .map(|n| AgentWrite::Register {
            registration: registration(&format!("agent-{n:03}"), n),
            generation: 1,
        })
        .collect();
    let acks = writes.iter().map(|w| store.write(w.clone()));
    for result in within("registers", futures::future::join_all(acks)).await {
        result.expect("register");
    }
    for write in &writes {
        write.apply(&mut expected).unwrap();
    }
    let mut more = Vec::new();
    for n in (0..200u64).step_by(3) {
        let id = AgentId::new(format!("agent-{n:03}"));
        more.push(AgentWrite::Checkpoint {
            id: id.clone(),
            checkpoint: Checkpoint {
                format: 2,
                data: n.to_le_bytes().to_vec(),
            },
            generation: 1,
        });
        more.push(AgentWrite::Update {
            id: id.clone(),
            update: AgentUpdate {
                status: Some(AgentStatus::Running),
                restart_count: Some(n as u32),
                passivated: Some(n % 2 == 0),
                config: None,
            },
            generation: 2,
        });
        if n % 5 == 0 {
            more.push(AgentWrite::Remove { id, generation: 2 });
        }
    }
    for write in more {
        within("write", store.write(write.clone()))
            .await
            .expect("write");
        write.apply(&mut expected).unwrap();
    }
    drop(store);
    let store = open().await;
    assert_eq!(
        table_of(&*store).await,
        expected,
        "the reopened table differs"
    );
    assert_eq!(
        within("count", store.count()).await.unwrap(),
        expected.len() as u64
    );
    let one = within("get", store.get(&"agent-003".into())).await.unwrap();
    assert_eq!(one.as_ref(), expected.get("agent-003"));
    assert_eq!(
        within("get", store.get(&"agent-000".into())).await.unwrap(),
        None
    );
}

/// A write with an older generation is `Stale` and changes nothing; an
/// equal or newer one is accepted and becomes the record's.
async fn a_stale_generation_is_refused(open: &Open) {
    let store = open().await;
    let id = AgentId::new("fenced");
    within("register", store.register(registration("fenced", 1), 5))
        .await
        .unwrap();
    let before = within("get", store.get(&id)).await.unwrap();
    let stale = [
        AgentWrite::Register {
            registration: registration("fenced", 9),
            generation: 4,
        },
        AgentWrite::Update {
            id: id.clone(),
            update: AgentUpdate {
                passivated: Some(true),
                ..Default::default()
            },
            generation: 3,
        },
        AgentWrite::Checkpoint {
            id: id.clone(),
            checkpoint: Checkpoint {
                format: 1,
                data: vec![1],
            },
            generation: 0,
        },
        AgentWrite::Remove {
            id: id.clone(),
            generation: 4,
        },
    ];
    for write in stale {
        let err = within("stale write", store.write(write)).await.unwrap_err();
        assert_eq!(
            err,
            AgentStoreError::Stale {
                id: id.clone(),
                stored: 5,
                offered: err_offered(&err)
            }
        );
        assert_eq!(err.code(), 1702);
    }
    assert_eq!(within("get", store.get(&id)).await.unwrap(), before);
    within(
        "newer",
        store.checkpoint(
            id.clone(),
            Checkpoint {
                format: 1,
                data: vec![7],
            },
            6,
        ),
    )
    .await
    .unwrap();
    let after = within("get", store.get(&id)).await.unwrap().unwrap();
    assert_eq!(after.generation, 6);
    within("remove", store.remove(id.clone(), 6)).await.unwrap();
}

fn err_offered(err: &AgentStoreError) -> u64 {
    match err {
        AgentStoreError::Stale { offered, .. } => *offered,
        other => panic!("expected Stale, got {other:?}"),
    }
}

/// Bad input and unknown agents are typed errors that change nothing.
async fn bad_input_changes_nothing(open: &Open) {
    let store = open().await;
    let count = within("count", store.count()).await.unwrap();
    let cases = [
        (
            AgentWrite::Register {
                registration: registration("", 1),
                generation: 1,
            },
            1706,
        ),
        (
            AgentWrite::Register {
                registration: AgentRegistration::new("no-kind", "", json!({})),
                generation: 1,
            },
            1706,
        ),
        (
            AgentWrite::Update {
                id: "ghost".into(),
                update: AgentUpdate::default(),
                generation: 1,
            },
            1706,
        ),
        (
            AgentWrite::Register {
                registration: registration("huge-generation", 1),
                generation: u64::MAX,
            },
            1706,
        ),
        (
            AgentWrite::Update {
                id: "ghost".into(),
                update: AgentUpdate {
                    status: Some(AgentStatus::Stopped),
                    ..Default::default()
                },
                generation: 1,
            },
            1701,
        ),
        (
            AgentWrite::Checkpoint {
                id: "ghost".into(),
                checkpoint: Checkpoint {
                    format: 1,
                    data: vec![],
                },
                generation: 1,
            },
            1701,
        ),
        (
            AgentWrite::Remove {
                id: "ghost".into(),
                generation: 1,
            },
            1701,
        ),
    ];
    for (write, code) in cases {
        let err = within("bad write", store.write(write.clone()))
            .await
            .expect_err("bad input accepted");
        assert_eq!(err.code(), code, "{write:?}: {err}");
    }
    assert_eq!(within("count", store.count()).await.unwrap(), count);
}

async fn contract(open: Open) {
    acknowledged_writes_survive_a_reopen(&open).await;
    a_stale_generation_is_refused(&open).await;
    bad_input_changes_nothing(&open).await;
}

fn memory_open() -> Open {
    let store = MemoryAgentStore::new();
    Box::new(move || {
        let store: Arc<dyn AgentStore> = Arc::new(store.clone());
        futures::future::ready(store).boxed()
    })
}

fn sqlite_open(dir: &std::path::Path) -> Open {
    let dir = dir.to_owned();
    Box::new(move || {
        let dir = dir.clone();
        async move {
            let store: Arc<dyn AgentStore> = Arc::new(
                SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir))
                    .await
                    .expect("open"),
            );
            store
        }
        .boxed()
    })
}

fn postgres_open(schema: String) -> Open {
    Box::new(move || {
        let config = support::pg_config(&schema);
        async move {
            let store: Arc<dyn AgentStore> =
                Arc::new(PostgresAgentStore::open(config).await.expect("open"));
            store
        }
        .boxed()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_postgres() {
    contract(postgres_open(support::fresh_schema())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_memory() {
    contract(memory_open()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    contract(sqlite_open(dir.path())).await;
}

// ---- Ownership: the same contract in memory and on PostgreSQL ----------

/// supervision-core's `Ownership` contract: a fenced compare-and-set.
async fn ownership_contract(store: Arc<dyn Ownership>) {
    let x = AgentId::new("x");
    let first = within("claim", store.claim(&x, "a", 1, None))
        .await
        .unwrap();
    assert_eq!((&*first.node, first.generation), ("a", 1));
    // The owner again: the same claim, epoch unchanged.
    assert_eq!(store.claim(&x, "a", 1, None).await.unwrap(), first);
    // Another node without the current claim in hand: a conflict naming it.
    let conflict = store.claim(&x, "b", 7, None).await.unwrap_err();
    assert_eq!(
        conflict,
        OwnershipError::Conflict {
            owner: first.clone()
        }
    );
    assert_eq!(conflict.code(), 1801);
    // An outdated claim in hand is no takeover.
    let outdated = Claim {
        epoch: first.epoch.wrapping_sub(1),
        ..first.clone()
    };
    assert!(store.claim(&x, "b", 7, Some(&outdated)).await.is_err());
    // Another agent's claim in hand is no takeover either.
    let y = AgentId::new("y");
    let y_claim = store.claim(&y, "a", 1, None).await.unwrap();
    assert!(store.claim(&x, "b", 7, Some(&y_claim)).await.is_err());
    // The current claim in hand: granted, fenced higher.
    let second = store.claim(&x, "b", 7, Some(&first)).await.unwrap();
    assert_eq!((&*second.node, second.generation), ("b", 7));
    assert!(second.epoch > first.epoch);
    assert_eq!(store.owner(&x).await.unwrap(), Some(second.clone()));
    // The same node restarted: its newer generation takes over, an older
    // one is stale.
    let third = store.claim(&x, "b", 8, None).await.unwrap();
    assert!(third.epoch > second.epoch);
    let stale = store.claim(&x, "b", 7, None).await.unwrap_err();
    assert!(
        matches!(stale, OwnershipError::Stale { generation: 7, .. }),
        "{stale:?}"
    );
    assert_eq!(stale.code(), 1802);
    // The first owner, replaced, cannot take it back with its old claim.
    assert!(store.claim(&x, "a", 1, Some(&first)).await.is_err());
    // Only the owner releases; the next claim's epoch still grows.
    let not_owner = store.release(&x, "a", 1).await.unwrap_err();
    assert_eq!(not_owner.code(), 1803);
    store.release(&x, "b", 8).await.unwrap();
    assert_eq!(store.owner(&x).await.unwrap(), None);
    let fourth = store.claim(&x, "c", 1, None).await.unwrap();
    assert!(fourth.epoch > third.epoch);
    assert_eq!(store.owner(&AgentId::new("never")).await.unwrap(), None);
}

/// Two generations of nodes racing to claim the same agents (64 tasks
/// each, one claim per agent each): every agent has exactly one winner,
/// the loser's answer names it, and the store holds the winner's claim.
async fn racing_claims_have_one_winner(store: Arc<dyn Ownership>) {
    let agents: Vec<AgentId> = (0..64).map(|i| AgentId::new(format!("race-{i}"))).collect();
    let claims = agents.iter().flat_map(|agent| {
        [("a", 3), ("b", 9)].map(|(node, generation)| {
            let claim = store.claim(agent, node, generation, None);
            async move { (node, claim.await) }
        })
    });
    let answers = within("racing claims", futures::future::join_all(claims)).await;
    for (agent, pair) in agents.iter().zip(answers.chunks(2)) {
        let granted: Vec<&Claim> = pair.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        assert_eq!(granted.len(), 1, "{agent}: {pair:?}");
        let winner = granted[0].clone();
        for (_, answer) in pair {
            if let Err(error) = answer {
                assert_eq!(
                    error,
                    &OwnershipError::Conflict {
                        owner: winner.clone()
                    }
                );
            }
        }
        assert_eq!(store.owner(agent).await.unwrap(), Some(winner));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_contract_memory() {
    ownership_contract(Arc::new(MemoryOwnership::new())).await;
    racing_claims_have_one_winner(Arc::new(MemoryOwnership::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_contract_postgres() {
    let config = support::pg_config(&support::fresh_schema());
    let store = PostgresAgentStore::open(config).await.expect("open");
    ownership_contract(Arc::new(store.clone())).await;
    racing_claims_have_one_winner(Arc::new(store.clone())).await;
    store.stop().await;
}

/// A store on a fresh PostgreSQL schema.
async fn fresh_postgres() -> PostgresAgentStore {
    PostgresAgentStore::open(support::pg_config(&support::fresh_schema()))
        .await
        .expect("open")
}

/// A one-byte checkpoint of format 1.
fn checkpoint(n: u8) -> Checkpoint {
    Checkpoint {
        format: 1,
        data: vec![n],
    }
}

/// Fencing on PostgreSQL: a member whose agent was taken over (a
/// survivor claimed it replacing the member's claim) has its checkpoint
/// refused as `Fenced`, the row unchanged; the new owner's is stored. A
/// member restarted under a newer generation recovers (`load_page`) only
/// the agents no one else owns now, and claims them; the older
/// generation's writes to those are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_is_fenced_off_on_postgres() {
    let store = fresh_postgres().await;
    let a1 = store.fenced("a", || 1);
    let b5 = store.fenced("b", || 5);
    let ids: Vec<AgentId> = (0..6).map(|i| AgentId::new(format!("f-{i}"))).collect();
    for id in &ids {
        store.claim(id, "a", 1, None).await.unwrap();
        within("register", a1.register(registration(id.as_str(), 0), 0))
            .await
            .unwrap();
        within("checkpoint", a1.checkpoint(id.clone(), checkpoint(1), 0))
            .await
            .expect("the owner's checkpoint");
    }
    // b takes f-0 .. f-2 over from a (seen down): a's late checkpoints are
    // refused and change nothing; b's are stored.
    let dead = store.claims_of("a", 1).await.unwrap();
    assert_eq!(dead.len(), 6);
    let taken = store.take_over(&dead[..3], "b", 5).await.unwrap();
    assert_eq!(taken.len(), 3);
    // A second take-over of the same claims finds them gone: none granted.
    assert!(
        store
            .take_over(&dead[..3], "c", 2)
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids[..3] {
        let refused = a1
            .checkpoint(id.clone(), checkpoint(2), 0)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, AgentStoreError::Fenced { owner, .. } if owner == "b/5"),
            "{refused:?}"
        );
        assert_eq!(refused.code(), 1712);
        let kept = store.get(id).await.unwrap().unwrap();
        assert_eq!(kept.checkpoint, Some(checkpoint(1)), "{id}: unchanged");
        b5.checkpoint(id.clone(), checkpoint(3), 0)
            .await
            .expect("the new owner's checkpoint");
    }
    // a restarted (generation 2) recovers f-3 .. f-5 only, now its own.
    let a2 = store.fenced("a", || 2);
    let recovered: Vec<AgentId> = within("load", a2.load_page(None, 2))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(recovered, ids[3..5].to_vec(), "a full page of its own");
    let rest = a2.load_page(recovered.last(), 2).await.unwrap();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].id, ids[5]);
    for id in &ids[3..] {
        assert_eq!(store.owner(id).await.unwrap().unwrap().generation, 2);
        assert!(matches!(
            a1.checkpoint(id.clone(), checkpoint(4), 0).await,
            Err(AgentStoreError::Fenced { .. })
        ));
        a2.checkpoint(id.clone(), checkpoint(5), 0).await.unwrap();
    }
    // b's recovery finds its three, claimed already.
    let of_b = b5.load_page(None, 100).await.unwrap();
    assert_eq!(
        of_b.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    // An agent no one claimed (written unfenced) is anyone's to recover:
    // the first view that loads it claims it.
    store.register(registration("free", 0), 0).await.unwrap();
    let free = AgentId::new("free");
    let loaded = b5.load_page(ids.get(2), 100).await.unwrap();
    assert!(loaded.iter().any(|r| r.id == free), "{loaded:?}");
    assert_eq!(
        store.owner(&free).await.unwrap().unwrap().node.as_ref(),
        "b"
    );
    // Removed by its owner: released, and refused to the others after.
    b5.remove(free.clone(), 0).await.unwrap();
    assert_eq!(store.owner(&free).await.unwrap(), None);
    store.stop().await;
}

/// ABA on PostgreSQL: member (a, 1) claims an agent (epoch e1), loses it
/// to b (e2) and wins it back (e3): the same member and generation own
/// it again, yet a write made under the older grant (e1) is refused as
/// `Fenced` and changes nothing; writes under the current grant, or
/// through a's fenced view (which recorded e3 at the take-over), are
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_an_older_grant_is_refused_on_postgres() {
    let store = fresh_postgres().await;
    let a1 = store.fenced("a", || 1);
    let b5 = store.fenced("b", || 5);
    let id = AgentId::new("aba");
    let first = a1.claim(&id).await.unwrap();
    within("register", a1.register(registration("aba", 0), 0))
        .await
        .unwrap();
    let lost = b5.take_over(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(lost.len(), 1);
    let again = a1.take_over(&lost).await.unwrap();
    assert_eq!(again.len(), 1);
    let current = &again[0];
    assert_eq!((&*current.node, current.generation), ("a", 1));
    assert!(current.epoch > first.epoch, "{current:?} after {first:?}");
    assert_eq!(a1.granted(&id), Some(current.epoch));

    let write = |n| AgentWrite::Checkpoint {
        id: id.clone(),
        checkpoint: checkpoint(n),
        generation: 0,
    };
    let refused = within("old grant", store.write_claimed(write(1), &first))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AgentStoreError::Fenced { owner, .. } if owner == "a/1"),
        "{refused:?}"
    );
    assert_eq!(store.get(&id).await.unwrap().unwrap().checkpoint, None);
    within("current grant", store.write_claimed(write(2), current))
        .await
        .expect("the current grant's write");
    within("fenced view", a1.write(write(3)))
        .await
        .expect("the view's write carries the current epoch");
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().checkpoint,
        Some(checkpoint(3))
    );
    // b's view, whose grant is gone, is refused too.
    assert!(matches!(
        b5.write(write(4)).await,
        Err(AgentStoreError::Fenced { .. })
    ));
    store.stop().await;
}

/// Node leases on PostgreSQL, by the server's clock: a renewed lease
/// runs (a voter), one marked dead is renewed no more and expires after
/// what `mark_dead` said was left; a member is suspected by a majority
/// only once more than half of the leased members suspect it; the claims
/// of an expired member are listed for the taking; a restarted node's
/// recovery does not claim back its older generation's agents once that
/// generation was declared dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_leases_run_by_the_servers_clock_on_postgres() {
    let store = fresh_postgres().await;
    let length = Duration::from_millis(800);
    let mut a = store.lease("a", 1, length);
    let mut b = store.lease("b", 1, length);
    let mut c = store.lease("c", 1, length);
    for lease in [&mut a, &mut b, &mut c] {
        assert_eq!(lease.renew().await.unwrap(), Renewal::Renewed);
    }
    assert_eq!(store.leased_members().await.unwrap().len(), 3);
    // One suspicion of three voters is no majority; two are.
    let window = Duration::from_secs(10);
    assert_eq!(store.suspect("c", 1, "a", 1, window).await.unwrap(), (1, 3));
    assert_eq!(store.suspect("c", 1, "b", 1, window).await.unwrap(), (2, 3));
    // c holds a claim; declared dead, it renews no more.
    let id = AgentId::new("leased");
    let c_view = store.fenced("c", || 1);
    c_view.claim(&id).await.unwrap();
    store.register(registration("leased", 0), 0).await.unwrap();
    let left = store
        .mark_dead("c", 1)
        .await
        .unwrap()
        .expect("c holds a lease");
    assert!(left <= length, "{left:?}");
    assert_eq!(c.renew().await.unwrap(), Renewal::Dead);
    assert_eq!(store.mark_dead("nobody", 1).await.unwrap(), None);
    // Its restart (generation 2) does not take the agent back: the
    // others do, once its lease has run out.
    let c2 = store.fenced("c", || 2);
    assert!(c2.load_page(None, 10).await.unwrap().is_empty());
    assert_eq!(store.owner(&id).await.unwrap().unwrap().generation, 1);
    // Expired by the server's clock, polled (bounded): no node clock.
    assert!(!store.lease_expired("c", 1).await.unwrap() || left.is_zero());
    within("c's lease expires", async {
        while !store.lease_expired("c", 1).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(a.renew().await.unwrap(), Renewal::Renewed);
    assert!(!store.lease_expired("a", 1).await.unwrap());
    let expired = store.expired_holders().await.unwrap();
    assert!(expired.contains(&("c".into(), 1)), "{expired:?}");
    // A member that stopped ends its lease at once.
    assert_eq!(b.renew().await.unwrap(), Renewal::Renewed);
    assert!(!store.lease_expired("b", 1).await.unwrap());
    store.release_lease("b", 1).await.unwrap();
    assert!(store.lease_expired("b", 1).await.unwrap());
    assert_eq!(b.renew().await.unwrap(), Renewal::Dead);
    store.stop().await;
}

// ---- Property: replayed from the store = in memory ----------------------

fn arb_write() -> impl Strategy<Value = AgentWrite> {
    let id = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(AgentId::new);
    let generation = 0u64..4;
    let status = prop::sample::select(vec![
        AgentStatus::Registered,
        AgentStatus::Running,
        AgentStatus::Stopped,
        AgentStatus::Failed,
    ]);
    prop_oneof![
        (id.clone(), generation.clone(), 0u64..100).prop_map(|(id, generation, n)| {
            AgentWrite::Register {
                registration: registration(id.as_str(), n),
                generation,
            }
        }),
        (
            id.clone(),
            generation.clone(),
            proptest::option::of(0u64..100),
            proptest::option::of(status),
            proptest::option::of(0u32..10),
            proptest::option::of(any::<bool>())
        )
            .prop_map(
                |(id, generation, config, status, restart_count, passivated)| {
                    AgentWrite::Update {
                        id,
                        update: AgentUpdate {
                            config: config.map(|n| json!({"step": n})),
                            status,
                            restart_count,
                            passivated,
                        },
                        generation,
                    }
                }
            ),
        (
            id.clone(),
            generation.clone(),
            0u32..3,
            prop::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(id, generation, format, data)| AgentWrite::Checkpoint {
                id,
                checkpoint: Checkpoint { format, data },
                generation,
            }),
        (id, generation).prop_map(|(id, generation)| AgentWrite::Remove { id, generation }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of register/update/checkpoint/remove gives the same
    /// answers from both stores, and the SQLite table read back after a
    /// reopen equals the in-memory one.
    #[test]
    fn any_write_sequence_replayed_from_sqlite_equals_memory(
        writes in prop::collection::vec(arb_write(), 1..30)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let memory = MemoryAgentStore::new();
            let sqlite = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir.path()))
                .await
                .unwrap();
            for write in &writes {
                let in_memory = memory.write(write.clone()).await.map_err(|e| e.code());
                let on_disk = within("write", sqlite.write(write.clone()))
                    .await
                    .map_err(|e| e.code());
                assert_eq!(in_memory, on_disk, "{write:?}");
            }
            drop(sqlite);
            let reopened = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir.path()))
                .await
                .unwrap();
            assert_eq!(table_of(&reopened).await, memory.snapshot());
        });
    }
}

// ---- kill -9 --------------------------------------------------------------

const CHILD_ENV: &str = "AGENT_CRASH_DIR";
/// Acknowledgements the parent reads before it kills the child.
const KILL_AFTER: usize = 400;
/// Concurrent writers in the child.
const WRITERS: u64 = 16;

/// The child's side: `WRITERS` tasks each register agents and checkpoint a
/// count into them, printing `reg ID` and `count ID N` as each write is
/// acknowledged. Does nothing unless run by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir))
        .await
        .unwrap();
    let (lines, mut printed) = tokio::sync::mpsc::unbounded_channel::<String>();
    for task in 0..WRITERS {
        let store = store.clone();
        let lines = lines.clone();
        tokio::spawn(async move {
            for agent in 0u64.. {
                let id = format!("t{task}-{agent}");
                store.register(registration(&id, agent), 1).await.unwrap();
                lines.send(format!("reg {id}")).unwrap();
                for count in 1..=3u64 {
                    let checkpoint = Checkpoint {
                        format: 1,
                        data: count.to_le_bytes().to_vec(),
                    };
                    store
                        .checkpoint(id.as_str().into(), checkpoint, 1)
                        .await
                        .unwrap();
                    lines.send(format!("count {id} {count}")).unwrap();
                }
            }
        });
    }
    let mut stdout = std::io::stdout();
    while let Some(line) = printed.recv().await {
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn every_acknowledged_write_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed on every path out of this test, a failed assertion included.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut registered = Vec::new();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["reg", id] => registered.push(id.to_owned()),
            ["count", id, n] => {
                counts.insert(id.to_owned(), n.parse().unwrap());
            }
            _ => continue,
        }
        acks += 1;
        if acks == KILL_AFTER {
            child.0.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.0.wait().unwrap();
    assert_eq!(acks, KILL_AFTER, "the child stopped early");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = within(
            "reopen",
            SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir.path())),
        )
        .await
        .unwrap();
        let table = table_of(&store).await;
        for id in &registered {
            assert!(
                table.contains_key(id.as_str()),
                "acknowledged agent {id} lost"
            );
        }
        for (id, count) in &counts {
            let checkpoint = table[id.as_str()]
                .checkpoint
                .as_ref()
                .expect("a checkpoint");
            let stored = u64::from_le_bytes(checkpoint.data.as_slice().try_into().unwrap());
            assert!(
                stored >= *count,
                "{id}: stored {stored} < acknowledged {count}"
            );
        }
        eprintln!(
            "crash test: {} registrations and {} counters acknowledged, {} agents stored",
            registered.len(),
            counts.len(),
            table.len()
        );
    });
}

// ---- What only a file can show --------------------------------------------

async fn open_sqlite(dir: &std::path::Path) -> SqliteAgentStore {
    within(
        "open",
        SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir)),
    )
    .await
    .expect("open")
}

/// Writes `sql` into the store's file behind its back.
fn tamper(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("agents.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_fails_that_agent_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).await;
    for id in ["a", "b", "c", "d", "e"] {
        within("register", store.register(registration(id, 1), 1))
            .await
            .unwrap();
    }
    drop(store);
    tamper(
        dir.path(),
        "UPDATE agents SET config = 'not json{' WHERE id = 'b';
         UPDATE agents SET status = 'flying' WHERE id = 'c';
         UPDATE agents SET passivated = x'00ff' WHERE id = 'd';",
    );
    let store = open_sqlite(dir.path()).await;
    let loaded = load_all(&store, 2).await;
    let verdicts: Vec<(&str, Result<(), u32>)> = loaded
        .iter()
        .map(|l| {
            (
                l.id.as_str(),
                l.record.as_ref().map(drop).map_err(|e| e.code()),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("a", Ok(())),
            ("b", Err(1704)),
            ("c", Err(1704)),
            ("d", Err(1704)),
            ("e", Ok(()))
        ]
    );
    let err = within("get", store.get(&"b".into())).await.unwrap_err();
    assert!(
        matches!(err, AgentStoreError::Corrupt { ref id, .. } if id.as_str() == "b"),
        "{err}"
    );
    // The corrupt agent can be registered again, which repairs its row.
    within("re-register", store.register(registration("b", 2), 1))
        .await
        .unwrap();
    assert!(
        within("get", store.get(&"b".into()))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_record_version_is_a_typed_error_for_that_agent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).await;
    for id in ["old", "new"] {
        within("register", store.register(registration(id, 1), 1))
            .await
            .unwrap();
    }
    drop(store);
    tamper(dir.path(), "UPDATE agents SET version = 2 WHERE id = 'new'");
    let store = open_sqlite(dir.path()).await;
    let loaded = load_all(&store, 10).await;
    assert_eq!(loaded.len(), 2);
    assert_eq!(
        loaded[0].record,
        Err(AgentStoreError::NewerVersion {
            id: "new".into(),
            found: 2,
            supported: 1
        })
    );
    assert!(loaded[1].record.is_ok());
    // Nor is it updated in place by this older build.
    let err = within(
        "checkpoint",
        store.checkpoint(
            "new".into(),
            Checkpoint {
                format: 1,
                data: vec![],
            },
            1,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), 1705);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_registrations_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteAgentStoreConfig::new(dir.path()).with_max_size_bytes(64 * 1024);
    let store = within("open", SqliteAgentStore::open(config))
        .await
        .unwrap();
    let big = json!({"padding": "x".repeat(2000)});
    let mut accepted = Vec::new();
    let full = loop {
        let id = format!("agent-{}", accepted.len());
        let mut reg = registration(&id, 1);
        reg.config = big.clone();
        match within("register", store.register(reg, 1)).await {
            Ok(()) => accepted.push(id),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1000, "the cap was never reached");
    };
    assert_eq!(full.code(), 1703, "{full}");
    // Still serving: reads, and removals that make room again.
    assert_eq!(
        within("count", store.count()).await.unwrap(),
        accepted.len() as u64
    );
    assert_eq!(table_of(&store).await.len(), accepted.len());
    for id in accepted.iter().take(accepted.len() / 2) {
        within("remove", store.remove(id.as_str().into(), 1))
            .await
            .unwrap();
    }
    within("register", store.register(registration("small", 1), 1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_and_a_second_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agents.db"), b"hello, not sqlite").unwrap();
    let err = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 1709);
    assert_eq!(
        std::fs::read(dir.path().join("agents.db")).unwrap(),
        b"hello, not sqlite"
    );

    let other = tempfile::tempdir().unwrap();
    tamper(other.path(), "CREATE TABLE t (x INTEGER)");
    let err = SqliteAgentStore::open(SqliteAgentStoreConfig::new(other.path()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 1709);

    let dir = tempfile::tempdir().unwrap();
    let first = open_sqlite(dir.path()).await;
    let err = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 1711);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(first.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let migrations: i64 = rusqlite::Connection::open(first.path())
        .unwrap()
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(migrations, 1);
    first.stop().await;
    let err = within("closed", first.count()).await.unwrap_err();
    assert_eq!(err.code(), 1708);
}
