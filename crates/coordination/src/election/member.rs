//! [`ElectionMember`]: one participant's side of the election, embedded
//! in its agent: the timer, the term, the vote, the campaign, the
//! heartbeats and the lease.

use std::{
    hash::{Hash, Hasher},
    sync::{Arc, Weak},
    time::Duration,
};

use mabeam_supervision_core::{AgentDirectory, AgentId, Clock, Envelope, ask_all};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{
    ElectionConfig, ElectionReporter, HEARTBEAT_PROTOCOL, Leadership, REQUEST_VOTE_PROTOCOL,
};
use crate::CoordinationError;

/// What a member must not forget across its agent's restarts, as Raft
/// keeps `currentTerm` and `votedFor` on stable storage: carry it in the
/// agent's checkpoint and hand it back in [`MemberOptions::memory`].
/// Serialisable for a durable agent's stored checkpoint; the promise is
/// not stored (an instant of this process means nothing to the next).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberMemory {
    /// The latest term seen.
    pub term: u64,
    /// Whom it voted for in that term.
    pub voted_for: Option<AgentId>,
    /// The leader it promised not to vote against, and until when.
    #[serde(skip)]
    pub promised: Option<(AgentId, Instant)>,
}

/// Where a member writes its [`MemberMemory`] each time it changes, before
/// it answers or campaigns on it (Raft's stable storage): called under the
/// member's lock, so it must be quick and must not call the member.
pub type Persist = Arc<dyn Fn(&MemberMemory) + Send + Sync>;

/// How a member starts, beyond the shared [`ElectionConfig`].
#[derive(Clone, Default)]
pub struct MemberOptions {
    /// The observer to report to (taking office, renewing, stepping down).
    pub reporter: Option<ElectionReporter>,
    /// What a previous incarnation remembered.
    pub memory: Option<MemberMemory>,
    /// The first election timeout, instead of a random one (staggered
    /// starts, tests); later ones are random.
    pub first_timeout: Option<Duration>,
    /// Where to write its memory as it changes, so that a restarted agent
    /// hands it back in [`memory`](Self::memory).
    pub persist: Option<Persist>,
}

impl std::fmt::Debug for MemberOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberOptions")
            .field("reporter", &self.reporter)
            .field("memory", &self.memory)
            .field("first_timeout", &self.first_timeout)
            .field("persist", &self.persist.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    /// Elected; a lease once a majority acknowledged a heartbeat.
    Leader(Option<Instant>),
}

struct State {
    term: u64,
    voted_for: Option<AgentId>,
    role: Role,
    promised: Option<(AgentId, Instant)>,
    /// When the election timer runs out.
    deadline: Instant,
    rng: StdRng,
}

struct Shared {
    id: AgentId,
    config: ElectionConfig,
    directory: Arc<dyn AgentDirectory>,
    clock: Clock,
    reporter: Option<ElectionReporter>,
    persist: Option<Persist>,
    state: Mutex<State>,
    /// Wakes the timer when its deadline moved.
    wake: Notify,
    leading: watch::Sender<Option<Leadership>>,
}

/// One participant of an election, embedded in its agent: see the
/// [module docs](super). It campaigns by itself; the agent answers every
/// election envelope with [`answer`](Self::answer). Its task stops when
/// it is dropped (with its agent's state).
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_coordination::{ElectionConfig, ElectionMember, MemberOptions};
/// use mabeam_supervision_core::{Clock, testkit::ScriptedDirectory};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // One participant: a majority of one, so it leads after its timeout.
/// let config = ElectionConfig {
///     participants: vec!["a".into()],
///     lease: Duration::from_secs(1),
///     election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
///     rpc_timeout: Duration::from_millis(50),
///     seed: 7,
/// };
/// let peers = Arc::new(ScriptedDirectory::new());
/// let member = ElectionMember::start("a".into(), config, peers, Clock::tokio(), MemberOptions::default()).unwrap();
/// let leadership = member.campaign(Duration::from_secs(5)).await.unwrap();
/// assert_eq!(leadership.leader, "a".into());
/// // Campaigning again while leading returns the held lease at once.
/// assert_eq!(member.campaign(Duration::ZERO).await.unwrap().term, leadership.term);
/// # }
/// ```
pub struct ElectionMember {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// A weak handle to an [`ElectionMember`], for code outside its agent: it
/// never keeps the member alive.
#[derive(Clone)]
pub struct MemberHandle(Weak<Shared>);

impl std::fmt::Debug for ElectionMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("ElectionMember")
            .field("id", &self.shared.id)
            .field("term", &state.term)
            .field("role", &state.role)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberHandle").finish_non_exhaustive()
    }
}

impl Drop for ElectionMember {
    fn drop(&mut self) {
        self.task.abort();
        let now = self.shared.clock.now();
        let mut state = self.shared.state.lock();
        self.shared.step_down(&mut state, now);
    }
}

impl ElectionMember {
    /// Starts member `id` of the election `config` describes, reaching its
    /// peers through `directory`; its timer starts now. Must be called
    /// inside a tokio runtime.
    pub fn start(
        id: AgentId,
        config: ElectionConfig,
        directory: Arc<dyn AgentDirectory>,
        clock: Clock,
        options: MemberOptions,
    ) -> Result<Self, CoordinationError> {
        config.validate()?;
        if !config.participants.contains(&id) {
            return Err(CoordinationError::NotParticipant(id));
        }
        let mut seed = std::collections::hash_map::DefaultHasher::new();
        (config.seed, id.as_str()).hash(&mut seed);
        let mut rng = StdRng::seed_from_u64(seed.finish());
        let (min, max) = config.election_timeout;
        let first = options
            .first_timeout
            .unwrap_or_else(|| rng.random_range(min..=max));
        let memory = options.memory.unwrap_or_default();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                term: memory.term,
                voted_for: memory.voted_for,
                role: Role::Follower,
                promised: memory.promised,
                deadline: clock.now() + first,
                rng,
            }),
            id,
            config,
            directory,
            clock,
            reporter: options.reporter,
            persist: options.persist,
            wake: Notify::new(),
            leading: watch::channel(None).0,
        });
        let task = tokio::spawn(run(shared.clone()));
        Ok(ElectionMember { shared, task })
    }

    /// The answer to an election envelope ([`REQUEST_VOTE_PROTOCOL`],
    /// [`HEARTBEAT_PROTOCOL`]), or `None` if it is not one (or malformed).
    pub fn answer(&self, envelope: &Envelope) -> Option<Value> {
        self.shared.answer(envelope)
    }

    /// This member's leadership if it leads with a valid lease now.
    pub fn leadership(&self) -> Option<Leadership> {
        self.shared.leadership()
    }

    /// Its current term.
    pub fn term(&self) -> u64 {
        self.shared.state.lock().term
    }

    /// What to carry across its agent's restarts.
    pub fn memory(&self) -> MemberMemory {
        self.shared.state.lock().memory()
    }

    /// A weak handle for code outside the agent.
    pub fn handle(&self) -> MemberHandle {
        MemberHandle(Arc::downgrade(&self.shared))
    }

    /// Campaigns now (not before another leader's lease it promised has
    /// run out) and waits until it leads, at most `timeout`. A member that
    /// leads already gets its held lease back at once.
    /// [`CoordinationError::TimedOut`] if it does not lead by then.
    ///
    /// Do not await it inside the agent's own handler: the agent must keep
    /// answering its peers meanwhile (spawn it, or use a [`MemberHandle`]).
    pub async fn campaign(&self, timeout: Duration) -> Result<Leadership, CoordinationError> {
        campaign(&self.shared, timeout).await
    }
}

impl MemberHandle {
    /// The member's leadership, if it lives and leads with a valid lease.
    pub fn leadership(&self) -> Option<Leadership> {
        self.0.upgrade()?.leadership()
    }

    /// [`ElectionMember::campaign`]; [`CoordinationError::AgentStopped`]
    /// if the member is gone.
    pub async fn campaign(&self, timeout: Duration) -> Result<Leadership, CoordinationError> {
        let Some(shared) = self.0.upgrade() else {
            return Err(CoordinationError::AgentStopped(AgentId::from(
                "election member",
            )));
        };
        campaign(&shared, timeout).await
    }
}

async fn campaign(shared: &Shared, timeout: Duration) -> Result<Leadership, CoordinationError> {
    if let Some(leadership) = shared.leadership() {
        return Ok(leadership);
    }
    let mut leading = shared.leading.subscribe();
    {
        let mut state = shared.state.lock();
        if !matches!(state.role, Role::Leader(_)) {
            state.deadline = shared.clock.now();
        }
    }
    shared.wake.notify_one();
    let clock = shared.clock.clone();
    tokio::select! {
        leadership = leading.wait_for(|l| l.as_ref().is_some_and(|l| l.lease_until > clock.now())) => {
            match leadership {
                Ok(l) => Ok(l.clone().expect("waited for Some")),
                Err(_) => Err(CoordinationError::AgentStopped(shared.id.clone())),
            }
        }
        () = shared.clock.sleep(timeout) => Err(CoordinationError::TimedOut {
            what: format!("campaign of {}", shared.id),
            after: timeout,
        }),
    }
}

impl State {
    fn memory(&self) -> MemberMemory {
        MemberMemory {
            term: self.term,
            voted_for: self.voted_for.clone(),
            promised: self.promised.clone(),
        }
    }
}

impl Shared {
    /// Writes the memory out after a change of term, vote or promise.
    fn persist(&self, state: &State) {
        if let Some(persist) = &self.persist {
            persist(&state.memory());
        }
    }

    fn draw(&self, state: &mut State) -> Duration {
        let (min, max) = self.config.election_timeout;
        state.rng.random_range(min..=max)
    }

    fn reset_timer(&self, state: &mut State, from: Instant) {
        state.deadline = from + self.draw(state);
        self.wake.notify_one();
    }

    fn leadership(&self) -> Option<Leadership> {
        let state = self.state.lock();
        match state.role {
            Role::Leader(Some(until)) if until > self.clock.now() => Some(Leadership {
                leader: self.id.clone(),
                term: state.term,
                token: state.term,
                lease_until: until,
            }),
            _ => None,
        }
    }

    /// Leaves the leader's role (if it had it) and says so.
    fn step_down(&self, state: &mut State, now: Instant) {
        if let Role::Leader(lease) = state.role {
            state.role = Role::Follower;
            if lease.is_some() {
                self.leading.send_replace(None);
                if let Some(reporter) = &self.reporter {
                    reporter.stepped_down(&self.id, state.term, now);
                }
            }
        }
    }

    /// A newer term seen: follow it, with no vote yet.
    fn adopt(&self, state: &mut State, term: u64, now: Instant) {
        if term > state.term {
            self.step_down(state, now);
            state.term = term;
            state.voted_for = None;
            state.role = Role::Follower;
            self.persist(state);
        }
    }

    fn answer(&self, envelope: &Envelope) -> Option<Value> {
        let term = envelope.body["term"].as_u64()?;
        let now = self.clock.now();
        match &*envelope.protocol {
            REQUEST_VOTE_PROTOCOL => {
                let candidate = AgentId::from(envelope.body["candidate"].as_str()?);
                let mut state = self.state.lock();
                // A promise to a leader with a valid lease: no vote for
                // anyone else, and its term is not disturbed.
                if let Some((leader, until)) = &state.promised
                    && *until > now
                    && *leader != candidate
                {
                    return Some(json!({"granted": false, "term": state.term}));
                }
                self.adopt(&mut state, term, now);
                let granted =
                    term == state.term && state.voted_for.as_ref().is_none_or(|v| *v == candidate);
                if granted {
                    state.voted_for = Some(candidate);
                    self.persist(&state);
                    self.reset_timer(&mut state, now);
                }
                Some(json!({"granted": granted, "term": state.term}))
            }
            HEARTBEAT_PROTOCOL => {
                let leader = AgentId::from(envelope.body["leader"].as_str()?);
                let mut state = self.state.lock();
                if term < state.term || leader == self.id {
                    return Some(json!({"ack": false, "term": state.term}));
                }
                self.adopt(&mut state, term, now);
                state.role = Role::Follower;
                state.promised = Some((leader, now + self.config.lease));
                self.persist(&state);
                self.reset_timer(&mut state, now);
                Some(json!({"ack": true, "term": state.term}))
            }
            _ => None,
        }
    }

    /// Asks every peer `protocol` in `term`; returns how many said `yes`
    /// within `rpc_timeout` of `start`, having followed any newer term.
    async fn round(&self, protocol: &'static str, term: u64, start: Instant, yes: &str) -> usize {
        let peers: Vec<AgentId> = self
            .config
            .participants
            .iter()
            .filter(|p| **p != self.id)
            .cloned()
            .collect();
        let key = if protocol == REQUEST_VOTE_PROTOCOL {
            "candidate"
        } else {
            "leader"
        };
        let envelope = Envelope::new(
            protocol,
            json!({"term": term, key: self.id}),
            self.config.rpc_timeout,
        );
        let replies = ask_all(self.directory.as_ref(), &peers, &envelope, &self.clock).await;
        let deadline = start + self.config.rpc_timeout;
        let mut count = 0;
        let mut newest = term;
        for reply in &replies {
            let Ok(answer) = &reply.answer else { continue };
            if reply.at > deadline {
                continue; // too late to count
            }
            if answer[yes] == json!(true) {
                count += 1;
            }
            newest = newest.max(answer["term"].as_u64().unwrap_or(0));
        }
        if newest > term {
            let mut state = self.state.lock();
            let now = self.clock.now();
            self.adopt(&mut state, newest, now);
            self.reset_timer(&mut state, now);
        }
        count
    }
}

/// The member's own process: its timer, campaigns and heartbeats.
async fn run(shared: Arc<Shared>) {
    let clock = shared.clock.clone();
    loop {
        let (role, term, deadline) = {
            let state = shared.state.lock();
            (state.role, state.term, state.deadline)
        };
        match role {
            Role::Leader(lease) => {
                let start = clock.now();
                let acks = shared.round(HEARTBEAT_PROTOCOL, term, start, "ack").await;
                let now = clock.now();
                {
                    let mut state = shared.state.lock();
                    if state.term == term && matches!(state.role, Role::Leader(_)) {
                        if shared.config.is_majority(acks + 1) && now < start + shared.config.lease
                        {
                            let until = start + shared.config.lease;
                            state.role = Role::Leader(Some(until));
                            state.promised = Some((shared.id.clone(), until));
                            shared.persist(&state);
                            let leadership = Leadership {
                                leader: shared.id.clone(),
                                term,
                                token: term,
                                lease_until: until,
                            };
                            shared.leading.send_replace(Some(leadership.clone()));
                            if let Some(reporter) = &shared.reporter {
                                reporter.leading(&leadership, now);
                            }
                        } else if lease.is_none_or(|until| until <= now) {
                            // No majority acknowledges it: it steps down.
                            shared.step_down(&mut state, now);
                            shared.reset_timer(&mut state, now);
                        }
                    }
                }
                clock.sleep_until(start + shared.config.heartbeat()).await;
            }
            Role::Follower | Role::Candidate => {
                let woken = shared.wake.notified();
                tokio::select! {
                    () = clock.sleep_until(deadline) => {}
                    () = woken => continue,
                }
                let now = clock.now();
                let term = {
                    let mut state = shared.state.lock();
                    if state.deadline > now || matches!(state.role, Role::Leader(_)) {
                        continue; // moved meanwhile
                    }
                    if let Some((_, until)) = state.promised
                        && until > now
                    {
                        // A leader's lease it promised still runs: not
                        // before it ends (then after a random timeout,
                        // so the followers do not all campaign at once).
                        state.deadline = until + shared.draw(&mut state);
                        continue;
                    }
                    state.term += 1;
                    state.voted_for = Some(shared.id.clone());
                    state.role = Role::Candidate;
                    shared.persist(&state);
                    // If this campaign fails, the next one waits afresh.
                    state.deadline = now + shared.draw(&mut state);
                    state.term
                };
                let votes = 1 + shared
                    .round(REQUEST_VOTE_PROTOCOL, term, now, "granted")
                    .await;
                let mut state = shared.state.lock();
                if state.term == term && state.role == Role::Candidate {
                    state.role = if shared.config.is_majority(votes) {
                        Role::Leader(None)
                    } else {
                        Role::Follower
                    };
                }
            }
        }
    }
}
