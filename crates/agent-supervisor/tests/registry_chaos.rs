//! Chaos: 10,000 agents, 5,000 random kills while 8 tasks keep asking. At
//! the end every agent's recorded status matches whether it is alive,
//! restart counts add up to the kills, no process leaked (supervisor and
//! process-registry counts agree with the registry of agents), and no
//! request hung (each returned within its timeout).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Cmd, Worker, setup, worker};
use mabeam_agent_supervisor::{AgentConfig, AgentError, CallOptions};
use mabeam_supervision_core::AgentStatus;

const AGENTS: usize = 10_000;
const KILLS: usize = 5_000;
const ASKERS: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(2);

/// xorshift64: enough randomness for picking agents, no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_agents_five_thousand_kills_eight_askers() {
    let s = setup().await;
    let config = Arc::new(
        AgentConfig::clone(&worker("chaos")).with_max_restarts(u32::MAX, Duration::from_secs(3600)),
    );
    let ids: Arc<Vec<String>> = Arc::new((0..AGENTS).map(|i| format!("agent-{i}")).collect());
    for id in ids.iter() {
        s.agents
            .register_agent(id.as_str(), config.clone())
            .unwrap();
        s.agents.start_agent(id).await.unwrap();
    }

    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut askers = Vec::new();
    for seed in 0..ASKERS as u64 {
        let (agents, ids, done, answered) = (
            s.agents.clone(),
            ids.clone(),
            done.clone(),
            answered.clone(),
        );
        askers.push(tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (seed + 1);
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let id = &ids[next(&mut rng) as usize % ids.len()];
                let a = agents.agent_ref::<Worker>(id).unwrap();
                let began = Instant::now();
                match a.ask_with(Cmd::Add(1), CallOptions::timeout(TIMEOUT)).await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // Killed while handling this very message.
                    Err(AgentError::Crashed { .. }) => {}
                    Err(other) => panic!("{id}: {other:?}"),
                }
                slowest = slowest.max(began.elapsed());
            }
            slowest
        }));
    }

    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut kills = 0;
    while kills < KILLS {
        let id = &ids[next(&mut rng) as usize % ids.len()];
        // Only a running incarnation counts; one being restarted is skipped.
        let Some(process) = s.agents.lookup(id) else {
            continue;
        };
        process.kill();
        process.exited().await;
        kills += 1;
    }
    done.store(true, Ordering::Relaxed);
    for asker in askers {
        let slowest = asker.await.unwrap();
        assert!(
            slowest <= TIMEOUT + Duration::from_millis(500),
            "a request took {slowest:?}"
        );
    }
    assert!(answered.load(Ordering::Relaxed) > 0);

    // Every agent answers again (a restart under way is waited for).
    for id in ids.iter() {
        let a = s.agents.agent_ref::<Worker>(id).unwrap();
        a.ask(Cmd::Get).await.unwrap();
    }
    let mut restarts = 0u64;
    for details in s.agents.list() {
        assert_eq!(details.status, AgentStatus::Running, "{}", details.id);
        assert!(
            details.process.as_ref().unwrap().is_alive(),
            "{}",
            details.id
        );
        // The table's copy of the incarnation is the record's.
        assert_eq!(
            s.agents.lookup(details.id.as_str()),
            details.process,
            "{}",
            details.id
        );
        restarts += u64::from(details.restarts);
    }
    assert_eq!(restarts, KILLS as u64);
    let counts = s.agents.counts();
    assert_eq!(counts.get(AgentStatus::Running), AGENTS);
    assert_eq!(counts.total, AGENTS);
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        AGENTS
    );
    assert_eq!(s.processes.count(&s.ns), AGENTS);

    s.agents.stop().await;
    assert_eq!(s.agents.counts().get(AgentStatus::Stopped), AGENTS);
    assert_eq!(s.processes.count(&s.ns), 0);
}
