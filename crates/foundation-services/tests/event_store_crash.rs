//! Crash safety: a child process appends batches, pipelined, and prints
//! each acknowledgement; the parent SIGKILLs it mid-stream, reopens the
//! store, and finds every acknowledged batch, in order, and no part of a
//! batch that was not committed whole.
//!
//! The child is this test binary run again with `CRASH_CHILD_DIR` set,
//! running only the parent's own test, which then plays the child
//! ([`crash_child`], a plain function: no test of its own that would pass
//! without asserting anything).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use mabeam_foundation_services::{EventStore, EventStoreConfig};
use mabeam_supervision_core::Event;
use serde_json::json;

const CHILD_ENV: &str = "CRASH_CHILD_DIR";
/// Batches acknowledged before the parent kills the child.
const KILL_AFTER: usize = 300;
/// Batches the child keeps in flight.
const WINDOW: usize = 8;

/// How long the parent waits for each acknowledgement before it gives up.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// The child's side: append batches of 1 to 5 events forever, keeping
/// `WINDOW` in flight, printing `ack <batch> <first id> <size>` as each is
/// acknowledged.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child(dir: String) {
    let store = EventStore::open(EventStoreConfig::new(dir)).await.unwrap();
    let mut in_flight = std::collections::VecDeque::new();
    let mut stdout = std::io::stdout();
    for batch in 0u64.. {
        let size = batch % 5 + 1;
        let events = (0..size)
            .map(|index| {
                Event::new(
                    format!("stream-{}", batch % 3),
                    "appended",
                    json!({"batch": batch, "index": index, "size": size}),
                )
            })
            .collect();
        in_flight.push_back((batch, size, store.append_batch(events)));
        if in_flight.len() >= WINDOW {
            let (batch, size, pending) = in_flight.pop_front().unwrap();
            let appended = pending.await.unwrap();
            writeln!(stdout, "ack {batch} {} {size}", appended[0].id).unwrap();
            stdout.flush().unwrap();
        }
    }
}

#[test]
fn every_acknowledged_event_survives_a_sigkill_and_no_partial_batch_is_seen() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return crash_child(dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "every_acknowledged_event_survives_a_sigkill_and_no_partial_batch_is_seen",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines are read on a thread of their own, so that a child that
    // stops acknowledging fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    loop {
        let line = match lines.recv_timeout(ACK_WAIT) {
            Ok(line) => line.unwrap(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the child acknowledged nothing for {ACK_WAIT:?}");
            }
        };
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap()).collect();
        acked.push((fields[0], fields[1], fields[2]));
        if acked.len() == KILL_AFTER {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), KILL_AFTER, "the child stopped early");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = EventStore::open(EventStoreConfig::new(dir.path()))
            .await
            .unwrap();
        let events = store.read_from(1, u64::MAX).await.unwrap();
        // Group the stored events by batch, checking that ids are
        // contiguous and that batches follow each other in order.
        let mut batches: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.id, i as u64 + 1, "ids have a hole");
            let data = &event.event.data;
            let field = |name: &str| data[name].as_u64().unwrap();
            batches.entry(field("batch")).or_default().push((
                event.id,
                field("index"),
                field("size"),
            ));
        }
        let stored: Vec<u64> = batches.keys().copied().collect();
        assert_eq!(
            stored,
            (0..stored.len() as u64).collect::<Vec<_>>(),
            "the stored batches are not a prefix of the appended ones"
        );
        for (batch, events) in &batches {
            let size = batch % 5 + 1;
            assert_eq!(events.len() as u64, size, "batch {batch} is partial");
            assert!(
                events
                    .iter()
                    .enumerate()
                    .all(|(i, (_, index, s))| *index == i as u64 && *s == size),
                "batch {batch} is out of order"
            );
        }
        // Every acknowledged batch is there, at the id it was acknowledged with.
        for (batch, first_id, size) in &acked {
            let stored = batches
                .get(batch)
                .unwrap_or_else(|| panic!("acknowledged batch {batch} lost"));
            assert_eq!((stored[0].0, stored.len() as u64), (*first_id, *size));
        }
        eprintln!(
            "crash test: {} batches acknowledged, {} stored",
            acked.len(),
            batches.len()
        );
        store.stop().await;
    });
}
