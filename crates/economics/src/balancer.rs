//! The [`LoadBalancer`]: which agent takes the next piece of work.
//!
//! | strategy | picks | cost per pick |
//! |---|---|---|
//! | [`BalanceStrategy::RoundRobin`] | members in turn | O(1) |
//! | [`BalanceStrategy::Weighted`] | members in proportion to their weights, spaced as nginx's smooth weighted round-robin spaces them (5/1/1: `a a b a c a a`), over a precomputed cycle | O(1) |
//! | [`BalanceStrategy::LeastLoaded`] | the less busy of two members drawn in turn (power of two choices, as Envoy and Finagle do: near the true least-loaded at O(1)) | O(1) |
//! | [`BalanceStrategy::CapabilityAware`] | members holding every capability asked, in turn | O(1) per candidate |
//! | [`BalanceStrategy::PerformanceWeighted`] | in proportion to throughput over latency and errors, read from the `AgentLoad` contract (telemetry's PerformanceMonitor) at each [`refresh`](LoadBalancer::refresh) | O(1) |
//!
//! Every strategy skips, at the pick itself, a member whose status through
//! the directory is not running (dead, crashed, restarting, failed: a
//! passivated agent is running and is woken by its work) and a member with
//! as many picks in flight as its capacity. The capacity check and the
//! count in flight are one atomic step, so concurrent picks never admit
//! more than a member's capacity. A pick is a [`Lease`]: the member
//! counts as busy until it is dropped.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use mabeam_supervision_core::{AgentDirectory, AgentId, AgentLoad, AgentStatus, Envelope};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::BalancerError;

/// How the balancer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceStrategy {
    /// Each member in turn.
    RoundRobin,
    /// In proportion to each member's weight.
    Weighted,
    /// The less busy of two members (power of two choices).
    LeastLoaded,
    /// Members holding every capability asked, in turn.
    CapabilityAware,
    /// In proportion to recent performance (the `AgentLoad` contract).
    PerformanceWeighted,
}

/// A member of the balancer.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    /// The agent.
    pub id: AgentId,
    /// Its weight for [`BalanceStrategy::Weighted`], at least 1.
    pub weight: u32,
    /// What it can do, for [`BalanceStrategy::CapabilityAware`].
    pub capabilities: Vec<String>,
    /// The most picks it holds at once, at least 1.
    pub capacity: u32,
}

impl MemberSpec {
    /// A member of weight 1, no capabilities, capacity 1,000.
    pub fn new(id: impl Into<AgentId>) -> Self {
        MemberSpec {
            id: id.into(),
            weight: 1,
            capabilities: Vec::new(),
            capacity: 1_000,
        }
    }

    /// With this weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// With these capabilities.
    pub fn capabilities(mut self, capabilities: &[&str]) -> Self {
        self.capabilities = capabilities.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// With this capacity.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }
}

struct Member {
    spec: MemberSpec,
    in_flight: AtomicU32,
}

/// The members, rebuilt whole on each change (changes are rare, picks
/// are many).
#[derive(Default)]
struct Table {
    members: Vec<Arc<Member>>,
    index: HashMap<AgentId, usize>,
    /// Cumulative weights for `Weighted`.
    wheel: Wheel,
    /// Cumulative performance weights, set by `refresh`.
    performance: Wheel,
    /// Members per capability, in member order.
    by_capability: HashMap<String, Vec<usize>>,
}

/// The most slots a weighted schedule holds; weights whose total is
/// larger are scaled down to fit (each member keeps at least one slot).
const MAX_SLOTS: u64 = 1 << 20;

/// A weighted schedule: one cycle of picks in which each member appears as
/// often as its weight, interleaved smoothly as nginx's smooth weighted
/// round-robin spaces them (weights 5/1/1 give `a a b a c a a`); a pick
/// is then one index into the cycle.
///
/// nginx, at each pick, adds each member's weight to its current value,
/// takes the member of highest current (the first in member order on a
/// tie) and takes the total weight off its current. After `t` picks, a
/// member picked `c` times stands at `t * weight - total * c`. Among
/// members of equal weight the one picked least (then the first) is
/// highest, so they take their turns in member order: one cursor per
/// distinct weight stands for all of its members, and the cycle is built
/// in O(total weight x distinct weights), not x members.
#[derive(Default, Clone)]
struct Wheel {
    slots: Vec<u32>,
}

impl Wheel {
    fn new(weights: impl Iterator<Item = u64>) -> Self {
        let mut weights: Vec<u64> = weights.collect();
        let total: u64 = weights.iter().sum();
        if total > MAX_SLOTS {
            let scale = MAX_SLOTS as f64 / total as f64;
            for weight in &mut weights {
                *weight = ((*weight as f64 * scale) as u64).max(1);
            }
        }
        let total: u64 = weights.iter().sum();
        // Members by weight, each group in member order, with the picks it
        // has had: its next member is `members[picks % len]`, picked
        // `picks / len` times so far.
        let mut groups: BTreeMap<u64, (Vec<u32>, u64)> = BTreeMap::new();
        for (member, &weight) in weights.iter().enumerate() {
            groups.entry(weight).or_default().0.push(member as u32);
        }
        let mut groups: Vec<(u64, Vec<u32>, u64)> = groups
            .into_iter()
            .map(|(weight, (members, picks))| (weight, members, picks))
            .collect();
        let mut slots = Vec::with_capacity(total as usize);
        // Values stay below 2^41 (total and weights at most 2^20 each).
        let total = total as i64;
        for t in 1..=total {
            let mut best: Option<(i64, u32, usize)> = None;
            for (g, (weight, members, picks)) in groups.iter().enumerate() {
                let len = members.len() as u64;
                let member = members[(*picks % len) as usize];
                let current = t * *weight as i64 - total * (*picks / len) as i64;
                let better = match best {
                    None => true,
                    Some((value, first, _)) => {
                        current > value || (current == value && member < first)
                    }
                };
                if better {
                    best = Some((current, member, g));
                }
            }
            if let Some((_, member, g)) = best {
                slots.push(member);
                groups[g].2 += 1;
            }
        }
        Wheel { slots }
    }

    /// The member at step `n` of the cycle.
    fn at(&self, n: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[(n % self.slots.len() as u64) as usize] as usize)
    }
}

impl Table {
    fn build(members: Vec<Arc<Member>>, performance: Option<Vec<u64>>) -> Self {
        let index = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.spec.id.clone(), i))
            .collect();
        let wheel = Wheel::new(members.iter().map(|m| u64::from(m.spec.weight)));
        let performance = match performance {
            Some(weights) => Wheel::new(weights.into_iter()),
            None => Wheel::new(members.iter().map(|_| 1)),
        };
        let mut by_capability: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, member) in members.iter().enumerate() {
            for capability in &member.spec.capabilities {
                by_capability.entry(capability.clone()).or_default().push(i);
            }
        }
        Table {
            members,
            index,
            wheel,
            performance,
            by_capability,
        }
    }
}

/// A pick: the member counts it in flight until this is dropped.
pub struct Lease {
    member: Arc<Member>,
}

impl Lease {
    /// The agent picked.
    pub fn agent(&self) -> &AgentId {
        &self.member.spec.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("agent", self.agent())
            .finish()
    }
}

/// A queued piece of work.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Its id, given by the balancer.
    pub id: u64,
    /// What to do.
    pub payload: Value,
}

/// A move [`LoadBalancer::rebalance`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The work moved.
    pub work: u64,
    /// From the slow or unavailable agent.
    pub from: AgentId,
    /// To the agent that now holds it.
    pub to: AgentId,
}

/// Chooses agents for work. See the [module docs](self) for the
/// strategies.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use mabeam_economics::{BalanceStrategy, LoadBalancer, MemberSpec};
/// use serde_json::json;
/// use mabeam_supervision_core::{AgentStatus, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let agents = ScriptedDirectory::new();
/// for id in ["a", "b", "c"] {
///     agents.add(id, "worker", |_| Answer::Reply(json!("done")));
/// }
/// let balancer = LoadBalancer::new(Arc::new(agents.clone()), BalanceStrategy::RoundRobin);
/// for id in ["a", "b", "c"] {
///     balancer.add(MemberSpec::new(id)).unwrap();
/// }
/// agents.set_status(&"b".into(), AgentStatus::Crashed);
/// let picks: Vec<String> = (0..4).map(|_| balancer.pick(&[]).unwrap().agent().to_string()).collect();
/// assert_eq!(picks, ["a", "c", "a", "c"]); // b is skipped at once
/// # }
/// ```
pub struct LoadBalancer {
    directory: Arc<dyn AgentDirectory>,
    load: Option<Arc<dyn AgentLoad>>,
    strategy: BalanceStrategy,
    table: RwLock<Arc<Table>>,
    cursor: AtomicU64,
    queues: Mutex<HashMap<AgentId, VecDeque<Work>>>,
    next_work: AtomicU64,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("strategy", &self.strategy)
            .field("members", &self.table.read().members.len())
            .finish_non_exhaustive()
    }
}

impl LoadBalancer {
    /// A balancer of no members yet, choosing by `strategy`, checking
    /// members' status through `directory`.
    pub fn new(directory: Arc<dyn AgentDirectory>, strategy: BalanceStrategy) -> Self {
        LoadBalancer {
            directory,
            load: None,
            strategy,
            table: RwLock::new(Arc::new(Table::default())),
            cursor: AtomicU64::new(0),
            queues: Mutex::new(HashMap::new()),
            next_work: AtomicU64::new(1),
        }
    }

    /// Reads agents' performance from `load` (for
    /// [`BalanceStrategy::PerformanceWeighted`] and [`rebalance`](Self::rebalance)).
    pub fn with_load(mut self, load: Arc<dyn AgentLoad>) -> Self {
        self.load = Some(load);
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> BalanceStrategy {
        self.strategy
    }

    /// Adds a member (or replaces the member of that id).
    pub fn add(&self, spec: MemberSpec) -> Result<(), BalancerError> {
        if spec.weight == 0 {
            return Err(BalancerError::Invalid(format!(
                "weight of {}: must be at least 1",
                spec.id
            )));
        }
        if spec.capacity == 0 {
            return Err(BalancerError::Invalid(format!(
                "capacity of {}: must be at least 1",
                spec.id
            )));
        }
        let mut table = self.table.write();
        let mut members = table.members.clone();
        let member = Arc::new(Member {
            spec,
            in_flight: AtomicU32::new(0),
        });
        match table.index.get(&member.spec.id) {
            Some(&i) => members[i] = member,
            None => members.push(member),
        }
        *table = Arc::new(Table::build(members, None));
        Ok(())
    }

    /// Adds many members at once (one rebuild of the member table instead
    /// of one per member); all or nothing.
    pub fn add_all(
        &self,
        specs: impl IntoIterator<Item = MemberSpec>,
    ) -> Result<(), BalancerError> {
        let specs: Vec<MemberSpec> = specs.into_iter().collect();
        if let Some(bad) = specs.iter().find(|s| s.weight == 0 || s.capacity == 0) {
            return Err(BalancerError::Invalid(format!(
                "weight and capacity of {}: must be at least 1",
                bad.id
            )));
        }
        let mut table = self.table.write();
        let mut members = table.members.clone();
        let mut index = table.index.clone();
        for spec in specs {
            let member = Arc::new(Member {
                spec,
                in_flight: AtomicU32::new(0),
            });
            match index.get(&member.spec.id) {
                Some(&i) => members[i] = member,
                None => {
                    index.insert(member.spec.id.clone(), members.len());
                    members.push(member);
                }
            }
        }
        *table = Arc::new(Table::build(members, None));
        Ok(())
    }

    /// Adds every agent of `kind` the directory knows, with `template`'s
    /// weight, capabilities and capacity; returns how many.
    pub fn add_kind(&self, kind: &str, template: &MemberSpec) -> Result<usize, BalancerError> {
        let ids = self.directory.agents_of_kind(kind);
        let count = ids.len();
        self.add_all(ids.into_iter().map(|id| MemberSpec {
            id,
            ..template.clone()
        }))?;
        Ok(count)
    }

    /// Removes a member; its queued work stays queued for
    /// [`rebalance`](Self::rebalance) to move.
    pub fn remove(&self, id: &AgentId) -> Result<(), BalancerError> {
        let mut table = self.table.write();
        if !table.index.contains_key(id) {
            return Err(BalancerError::UnknownAgent(id.clone()));
        }
        let members = table
            .members
            .iter()
            .filter(|m| m.spec.id != *id)
            .cloned()
            .collect();
        *table = Arc::new(Table::build(members, None));
        Ok(())
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.table.read().members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many picks member `id` holds now.
    pub fn in_flight(&self, id: &AgentId) -> Option<u32> {
        let table = self.table.read();
        table
            .index
            .get(id)
            .map(|&i| table.members[i].in_flight.load(Ordering::Acquire))
    }

    /// Re-reads every member's performance from the `AgentLoad` contract
    /// for [`BalanceStrategy::PerformanceWeighted`]: weight in proportion to
    /// throughput (or, with none measured, to the inverse of latency),
    /// scaled down by the error rate. Members with no figures weigh as the
    /// median.
    pub fn refresh(&self) {
        let Some(load) = &self.load else {
            return;
        };
        let mut table = self.table.write();
        let scores: Vec<Option<f64>> = table
            .members
            .iter()
            .map(|m| {
                let report = load.load(&m.spec.id)?;
                let latency = report.latency_p50.as_secs_f64().max(1e-6);
                let speed = if report.throughput_per_s > 0.0 {
                    report.throughput_per_s
                } else {
                    1.0 / latency
                };
                Some(speed * (1.0 - report.error_rate.clamp(0.0, 1.0)))
            })
            .collect();
        let mut known: Vec<f64> = scores.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let median = known.get(known.len() / 2).copied().unwrap_or(1.0);
        let max = known
            .last()
            .copied()
            .unwrap_or(1.0)
            .max(median)
            .max(f64::MIN_POSITIVE);
        // Integer weights 1..=1000 relative to the best member.
        let weights = scores
            .iter()
            .map(|s| {
                ((s.unwrap_or(median) / max) * 1000.0)
                    .round()
                    .clamp(1.0, 1000.0) as u64
            })
            .collect();
        *table = Arc::new(Table::build(table.members.clone(), Some(weights)));
    }

    /// Picks a member for work needing `capabilities` (used by
    /// [`BalanceStrategy::CapabilityAware`]; the other strategies ignore it).
    pub fn pick(&self, capabilities: &[&str]) -> Result<Lease, BalancerError> {
        let table = self.table.read().clone();
        let n = table.members.len();
        if n == 0 {
            return Err(BalancerError::NoAgentAvailable);
        }
        let step = self.cursor.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.strategy {
            BalanceStrategy::RoundRobin => {
                let found = (0..n as u64)
                    .find(|k| self.admit(&table.members[((step + k) % n as u64) as usize]));
                // Skipped members lose their turn: the next pick starts
                // after this one, so the usable members share evenly.
                if let Some(k @ 1..) = found {
                    self.cursor.fetch_add(k, Ordering::Relaxed);
                }
                found.map(|k| ((step + k) % n as u64) as usize)
            }
            BalanceStrategy::Weighted => self.walk(&table, &table.wheel, step),
            BalanceStrategy::PerformanceWeighted => self.walk(&table, &table.performance, step),
            BalanceStrategy::LeastLoaded => self.two_choices(&table, step),
            BalanceStrategy::CapabilityAware => self.capable(&table, capabilities, step),
        };
        // The chosen member is already admitted (counted in flight).
        let member = chosen.ok_or(BalancerError::NoAgentAvailable)?;
        Ok(Lease {
            member: table.members[member].clone(),
        })
    }

    /// Picks a member and asks it `envelope` through the directory,
    /// holding the pick until it answers.
    pub async fn ask(
        &self,
        envelope: Envelope,
        capabilities: &[&str],
    ) -> Result<(AgentId, Value), BalancerError> {
        let lease = self.pick(capabilities)?;
        let answer = self.directory.ask(lease.agent(), envelope).await?;
        Ok((lease.agent().clone(), answer))
    }

    /// Admits a pick of `member` if it is running and below its capacity:
    /// the capacity check and the count in flight are one atomic step, so
    /// picks racing for its last place cannot both take it.
    fn admit(&self, member: &Member) -> bool {
        self.usable(member)
            && member
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < member.spec.capacity).then_some(n + 1)
                })
                .is_ok()
    }

    /// Whether `member` is running and below its capacity now (a reading:
    /// [`admit`](Self::admit) takes the place).
    fn usable(&self, member: &Member) -> bool {
        member.in_flight.load(Ordering::Acquire) < member.spec.capacity
            && self.directory.status(&member.spec.id) == Some(AgentStatus::Running)
    }

    /// The first usable member along the wheel's walk from `step`,
    /// admitted.
    fn walk(&self, table: &Table, wheel: &Wheel, step: u64) -> Option<usize> {
        // Over `total` steps the walk lands on each member as often as its
        // weight; an unusable member passes its turn to the next one.
        let n = table.members.len();
        let start = wheel.at(step)?;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.admit(&table.members[i]))
    }

    /// Power of two choices: two members drawn in turn, the less busy.
    fn two_choices(&self, table: &Table, step: u64) -> Option<usize> {
        let n = table.members.len();
        let first = (mix(step) % n as u64) as usize;
        // A different second member (when there are two or more).
        let second = match n {
            1 => first,
            _ => (first + 1 + (mix(!step) % (n as u64 - 1)) as usize) % n,
        };
        let (a, b) = (&table.members[first], &table.members[second]);
        let order = if b.in_flight.load(Ordering::Acquire) < a.in_flight.load(Ordering::Acquire) {
            [second, first]
        } else {
            [first, second]
        };
        order
            .into_iter()
            .find(|&i| self.admit(&table.members[i]))
            .or_else(|| {
                // Both unusable: the least busy usable member by a scan
                // (the next least busy if another pick took its place).
                let mut usable: Vec<(u32, usize)> = (0..n)
                    .filter(|&i| self.usable(&table.members[i]))
                    .map(|i| (table.members[i].in_flight.load(Ordering::Acquire), i))
                    .collect();
                usable.sort_unstable();
                usable
                    .into_iter()
                    .map(|(_, i)| i)
                    .find(|&i| self.admit(&table.members[i]))
            })
    }

    /// Members holding every capability, in turn.
    fn capable(&self, table: &Table, capabilities: &[&str], step: u64) -> Option<usize> {
        let candidates: &[usize] = match capabilities.first() {
            None => return self.walk(table, &table.wheel, step),
            Some(first) => {
                // Start from the rarest capability's members.
                let mut rarest = table.by_capability.get(*first)?;
                for capability in &capabilities[1..] {
                    let members = table.by_capability.get(*capability)?;
                    if members.len() < rarest.len() {
                        rarest = members;
                    }
                }
                rarest
            }
        };
        let n = candidates.len() as u64;
        let found = (0..n).find(|k| {
            let member = &table.members[candidates[((step + k) % n) as usize]];
            capabilities
                .iter()
                .all(|c| member.spec.capabilities.iter().any(|m| m == c))
                && self.admit(member)
        });
        if let Some(k @ 1..) = found {
            self.cursor.fetch_add(k, Ordering::Relaxed);
        }
        found.map(|k| candidates[((step + k) % n) as usize])
    }

    /// Queues `payload` for the member a pick chooses; returns the work's
    /// id and the member. The member takes it with
    /// [`next_work`](Self::next_work).
    pub fn enqueue(
        &self,
        payload: Value,
        capabilities: &[&str],
    ) -> Result<(u64, AgentId), BalancerError> {
        let agent = self.pick(capabilities)?.agent().clone();
        let id = self.next_work.fetch_add(1, Ordering::Relaxed);
        self.queues
            .lock()
            .entry(agent.clone())
            .or_default()
            .push_back(Work { id, payload });
        Ok((id, agent))
    }

    /// The oldest work queued for `agent`.
    pub fn next_work(&self, agent: &AgentId) -> Option<Work> {
        self.queues.lock().get_mut(agent)?.pop_front()
    }

    /// How much work is queued for `agent`.
    pub fn queued(&self, agent: &AgentId) -> usize {
        self.queues.lock().get(agent).map_or(0, VecDeque::len)
    }

    /// Moves queued work away from members that are unusable (not running,
    /// removed) or slow (a p50 latency above `slow_factor` times the
    /// members' median, through the `AgentLoad` contract), to the usable
    /// members with the shortest queues. Returns the moves.
    pub fn rebalance(&self, slow_factor: f64) -> Vec<Moved> {
        let table = self.table.read().clone();
        let latency = |id: &AgentId| {
            self.load
                .as_ref()
                .and_then(|load| load.load(id))
                .filter(|report| report.samples > 0)
                .map(|report| report.latency_p50.as_secs_f64())
        };
        let mut latencies: Vec<f64> = table
            .members
            .iter()
            .filter_map(|m| latency(&m.spec.id))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let median = latencies.get(latencies.len() / 2).copied();
        let is_slow = |id: &AgentId| match (latency(id), median) {
            (Some(l), Some(m)) => l > m * slow_factor,
            _ => false,
        };
        let targets: Vec<&Arc<Member>> = table
            .members
            .iter()
            .filter(|m| self.usable(m) && !is_slow(&m.spec.id))
            .collect();
        let mut queues = self.queues.lock();
        let sources: Vec<AgentId> = queues
            .iter()
            .filter(|(id, queue)| {
                !queue.is_empty()
                    && (table
                        .index
                        .get(*id)
                        .is_none_or(|&i| !self.usable(&table.members[i]))
                        || is_slow(id))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut moves = Vec::new();
        if targets.is_empty() {
            return moves;
        }
        for from in sources {
            while let Some(work) = queues.get_mut(&from).and_then(VecDeque::pop_front) {
                let to = targets
                    .iter()
                    .min_by_key(|m| {
                        (
                            queues.get(&m.spec.id).map_or(0, VecDeque::len),
                            table.index[&m.spec.id],
                        )
                    })
                    .map(|m| m.spec.id.clone())
                    .expect("targets is not empty");
                moves.push(Moved {
                    work: work.id,
                    from: from.clone(),
                    to: to.clone(),
                });
                queues.entry(to).or_default().push_back(work);
            }
        }
        moves
    }
}

/// A cheap bijective mix of a counter (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
