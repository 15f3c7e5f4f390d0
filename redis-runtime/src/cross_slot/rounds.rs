//! The protocol's bounded retries. Each step that can lose a race (a
//! value taken back before the write that claimed it ran, a write that
//! came while a record was applied) runs again, a bounded number of
//! times: the bound is the latency one call can pay for other writers.

/// A retry loop of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Claiming or releasing one unique value while other writers keep
    /// taking it: each round, another client claimed it in between.
    Value,
    /// Sending a write again with the claim token its claims gave, while
    /// another writer keeps taking a claimed value back before it runs.
    Write,
    /// Applying a pending record while writes of the entity keep coming:
    /// each round follows a write that came during the previous one, whose
    /// client found the lease held and left its moves to the holder.
    Record,
}

impl Retry {
    /// How many rounds it gets.
    pub(crate) const fn limit(self) -> usize {
        match self {
            Retry::Value | Retry::Write => 8,
            Retry::Record => 64,
        }
    }

    /// Its rounds, in order.
    pub(crate) fn rounds(self) -> impl Iterator<Item = Round> {
        let limit = self.limit();
        (1..=limit).map(move |number| Round { number, limit })
    }
}

/// One round of a [`Retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Round {
    number: usize,
    limit: usize,
}

impl Round {
    /// Whether no round follows: a step that holds something for the next
    /// round (a lease) lets it go now.
    pub(crate) const fn is_last(self) -> bool {
        self.number == self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_retry_runs_its_limit_and_only_its_last_round_is_last() {
        for retry in [Retry::Value, Retry::Write, Retry::Record] {
            let rounds: Vec<Round> = retry.rounds().collect();
            assert_eq!(rounds.len(), retry.limit());
            let last: Vec<bool> = rounds.iter().map(|round| round.is_last()).collect();
            assert_eq!(last.iter().filter(|last| **last).count(), 1);
            assert_eq!(last.last(), Some(&true));
        }
    }
}
