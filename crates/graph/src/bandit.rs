//! Multi-armed bandits driven by feedback: epsilon-greedy and Thompson sampling.

use std::sync::Mutex;

use crate::rng::Rng;

/// Which bandit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BanditKind {
    /// The arm with the best mean reward; a uniformly random arm with probability `epsilon`.
    EpsilonGreedy {
        /// Exploration rate, 0 to 1.
        epsilon: f64,
    },
    /// An arm drawn by its chance of being the best: each arm's reward (in [0, 1]) is a
    /// Beta(1 + successes, 1 + failures) posterior, sampled once per request.
    Thompson,
}

#[derive(Debug, Clone, Default)]
struct Arm {
    pulls: u64,
    rewards: f64,
    successes: f64,
    failures: f64,
}

/// A bandit's state, shared by the requests of one served graph (it starts afresh when the
/// graph is loaded again).
#[derive(Debug)]
pub struct Bandit {
    kind: BanditKind,
    state: Mutex<(Vec<Arm>, Rng)>,
}

impl Bandit {
    /// A bandit over `arms` arms.
    pub fn new(kind: BanditKind, arms: usize, rng: Rng) -> Bandit {
        Bandit { kind, state: Mutex::new((vec![Arm::default(); arms], rng)) }
    }

    /// The arm to pull now.
    pub fn choose(&self) -> usize {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (arms, rng) = &mut *guard;
        let n = arms.len().max(1);
        match self.kind {
            BanditKind::EpsilonGreedy { epsilon } => {
                if rng.unit() < epsilon {
                    return rng.below(n as u64) as usize;
                }
                let mean = |a: &Arm| if a.pulls == 0 { 0.0 } else { a.rewards / a.pulls as f64 };
                let mut best = 0;
                for (i, arm) in arms.iter().enumerate() {
                    if mean(arm) > mean(&arms[best]) {
                        best = i;
                    }
                }
                best
            }
            BanditKind::Thompson => {
                let mut best = (0, f64::MIN);
                for (i, arm) in arms.iter().enumerate() {
                    let draw = rng.beta(1.0 + arm.successes, 1.0 + arm.failures);
                    if draw > best.1 {
                        best = (i, draw);
                    }
                }
                best.0
            }
        }
    }

    /// Records the reward of one request routed to `arm` (Thompson sampling reads it
    /// clipped to [0, 1]).
    pub fn reward(&self, arm: usize, reward: f64) {
        if !reward.is_finite() {
            return;
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = guard.0.get_mut(arm) {
            a.pulls += 1;
            a.rewards += reward;
            let r = reward.clamp(0.0, 1.0);
            a.successes += r;
            a.failures += 1.0 - r;
        }
    }

    /// Per arm: (feedback count, mean reward), for metrics and tests.
    pub fn stats(&self) -> Vec<(u64, f64)> {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .0
            .iter()
            .map(|a| (a.pulls, if a.pulls == 0 { 0.0 } else { a.rewards / a.pulls as f64 }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `rounds` requests against arms that pay 1 with the given probabilities, and
    /// returns how often each arm was pulled in the last `tail` rounds.
    fn play(kind: BanditKind, payout: &[f64], rounds: usize, tail: usize, seed: u64) -> Vec<usize> {
        let bandit = Bandit::new(kind, payout.len(), Rng::seeded(seed));
        let mut world = Rng::seeded(seed ^ 0xabcdef);
        let mut counts = vec![0; payout.len()];
        for round in 0..rounds {
            let arm = bandit.choose();
            let reward = if world.unit() < payout[arm] { 1.0 } else { 0.0 };
            bandit.reward(arm, reward);
            if round >= rounds - tail {
                counts[arm] += 1;
            }
        }
        counts
    }

    // Stated convergence: within 2,000 requests each bandit sends at least 85% of the next
    // 1,000 to the better arm (payouts 0.2 / 0.5 / 0.7 and 0.3 / 0.6), for every seed tried.
    #[test]
    fn bandits_converge_to_the_better_arm() {
        for seed in 1..=5 {
            for kind in [BanditKind::EpsilonGreedy { epsilon: 0.1 }, BanditKind::Thompson] {
                let counts = play(kind, &[0.2, 0.5, 0.7], 3000, 1000, seed);
                assert!(counts[2] >= 850, "{kind:?} seed {seed}: {counts:?}");
                let counts = play(kind, &[0.3, 0.6], 3000, 1000, seed);
                assert!(counts[1] >= 850, "{kind:?} seed {seed}: {counts:?}");
            }
        }
    }
}
