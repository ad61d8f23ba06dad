//! [`Reputation`]: scores from rated transactions, decaying with time,
//! weighted by the rater's own standing.

use std::{collections::HashMap, time::Duration};

use mabeam_supervision_core::{AgentId, Clock};
use parking_lot::RwLock;
use tokio::time::Instant;

use crate::MarketError;

/// The score of an agent nobody has rated, and the weight of that prior.
pub const PRIOR_SCORE: f64 = 0.5;
const PRIOR_WEIGHT: f64 = 1.0;
/// The least weight a rating carries, however poor its rater's standing.
const MIN_RATER_WEIGHT: f64 = 0.05;

/// Reputation per agent in `[0, 1]`.
///
/// An agent's score is the weighted mean of the ratings it received,
/// pulled towards [`PRIOR_SCORE`] by a prior of weight 1. A rating weighs
/// its rater's own score at the time of rating (a poorly rated agent's
/// praise counts for little), halved every `half_life` as it ages. It
/// cannot be inflated by volume: an agent cannot rate itself, and a
/// rater's newer rating of the same agent replaces its older one, so a
/// pair of colluders counts once each way.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_economics::Reputation;
/// use mabeam_supervision_core::Clock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let reputation = Reputation::new(Clock::tokio(), Duration::from_secs(3600));
/// reputation.rate(&"buyer".into(), &"seller".into(), 1.0).unwrap();
/// assert!(reputation.score(&"seller".into()) > 0.5);
/// assert!(reputation.rate(&"seller".into(), &"seller".into(), 1.0).is_err());
/// # }
/// ```
#[derive(Debug)]
pub struct Reputation {
    clock: Clock,
    half_life: Duration,
    /// ratee -> rater -> its rating.
    ratings: RwLock<HashMap<AgentId, HashMap<AgentId, Rating>>>,
}

/// One rating: the score, the rater's weight when it rated, and when.
#[derive(Debug, Clone, Copy)]
struct Rating {
    score: f64,
    weight: f64,
    at: Instant,
}

impl Reputation {
    /// Scores read from `clock`, ratings losing half their weight every
    /// `half_life`.
    pub fn new(clock: Clock, half_life: Duration) -> Self {
        Reputation {
            clock,
            half_life,
            ratings: RwLock::new(HashMap::new()),
        }
    }

    /// `rater` rates `ratee` with `score` in `[0, 1]`, replacing its
    /// earlier rating of `ratee`.
    pub fn rate(&self, rater: &AgentId, ratee: &AgentId, score: f64) -> Result<(), MarketError> {
        if rater == ratee {
            return Err(MarketError::SelfDealing(rater.clone()));
        }
        if !(0.0..=1.0).contains(&score) {
            return Err(MarketError::Invalid(format!(
                "rating {score}: must be within 0 and 1"
            )));
        }
        let weight = self.score(rater).max(MIN_RATER_WEIGHT);
        let now = self.clock.now();
        self.ratings
            .write()
            .entry(ratee.clone())
            .or_default()
            .insert(
                rater.clone(),
                Rating {
                    score,
                    weight,
                    at: now,
                },
            );
        Ok(())
    }

    /// `agent`'s score now, in `[0, 1]`.
    pub fn score(&self, agent: &AgentId) -> f64 {
        let ratings = self.ratings.read();
        let Some(received) = ratings.get(agent) else {
            return PRIOR_SCORE;
        };
        let now = self.clock.now();
        let (mut total, mut weights) = (PRIOR_SCORE * PRIOR_WEIGHT, PRIOR_WEIGHT);
        for Rating { score, weight, at } in received.values() {
            let age = now.saturating_duration_since(*at).as_secs_f64();
            let decayed =
                weight * 0.5f64.powf(age / self.half_life.as_secs_f64().max(f64::MIN_POSITIVE));
            total += score * decayed;
            weights += decayed;
        }
        total / weights
    }

    /// How many raters have rated `agent`.
    pub fn raters(&self, agent: &AgentId) -> usize {
        self.ratings.read().get(agent).map_or(0, HashMap::len)
    }
}
