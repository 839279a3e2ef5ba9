//! How much of the pending queue one pass reads: [`queue_shares`] splits a cap on the
//! jobs read among the accounts that have pending jobs, so every account's head of
//! line is in every pass whatever the size of other accounts' backlogs.
//!
//! Reading "the oldest N pending jobs" across all accounts let one account with more
//! than N unplaceable jobs hide every other account's jobs from the planner (a node
//! sat idle while a placeable job timed out). The shares are a water-filling: accounts
//! with fewer pending jobs than an equal share get all of theirs, and what they leave
//! is split equally among the rest. Every account gets at least one job, so with more
//! accounts than the cap the pass reads one job per account (more than the cap): the
//! cap bounds the backlog read per account, never who is seen.

use gantry_types::ids::AccountId;

/// Per account with pending jobs (`pending`: account and how many it has), how many of
/// its oldest jobs a pass reads, in the input's order. Accounts with 0 are left out.
/// The shares sum to `min(cap, total pending)`, or to the number of accounts when that
/// is larger.
pub fn queue_shares(pending: &[(AccountId, u64)], cap: u32) -> Vec<(AccountId, u32)> {
    let waiting: Vec<(usize, u64)> =
        pending.iter().enumerate().filter(|(_, p)| p.1 > 0).map(|(i, p)| (i, p.1)).collect();
    let mut by_size = waiting.clone();
    by_size.sort_by_key(|&(i, n)| (n, i));
    let mut share = vec![0u32; pending.len()];
    let mut left = u64::from(cap);
    for (k, &(i, n)) in by_size.iter().enumerate() {
        // What is left, split among the accounts not served yet (rounded up, so the
        // last one takes exactly the rest); at least 1.
        let rest = (by_size.len() - k) as u64;
        let take = n.min(left.div_ceil(rest).max(1));
        share[i] = u32::try_from(take).unwrap_or(u32::MAX);
        left = left.saturating_sub(take);
    }
    waiting.iter().map(|&(i, _)| (pending[i].0, share[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: usize) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> = (0..n).map(|_| AccountId::new()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_huge_backlog_leaves_room_for_every_other_head() {
        let [f, v] = accounts(2)[..] else { unreachable!() };
        assert_eq!(queue_shares(&[(f, 20_400), (v, 1)], 20_000), vec![(f, 19_999), (v, 1)]);
        assert_eq!(queue_shares(&[(f, 60), (v, 1)], 50), vec![(f, 49), (v, 1)]);
    }

    #[test]
    fn small_queues_are_read_whole_and_the_rest_is_split() {
        let ids = accounts(4);
        let pending = [(ids[0], 3), (ids[1], 1_000), (ids[2], 0), (ids[3], 1_000)];
        assert_eq!(queue_shares(&pending, 100), vec![(ids[0], 3), (ids[1], 49), (ids[3], 48)]);
        assert_eq!(queue_shares(&pending, 10_000), vec![(ids[0], 3), (ids[1], 1_000), (ids[3], 1_000)]);
    }

    #[test]
    fn every_account_gets_one_even_past_the_cap() {
        let ids = accounts(5);
        let pending: Vec<_> = ids.iter().map(|&a| (a, 7)).collect();
        let shares = queue_shares(&pending, 3);
        assert_eq!(shares.len(), 5);
        assert!(shares.iter().all(|&(_, n)| n == 1), "{shares:?}");
        assert!(queue_shares(&[], 10).is_empty());
    }

    #[test]
    fn shares_sum_to_the_cap_when_the_queue_is_larger() {
        let ids = accounts(7);
        let pending: Vec<_> = ids.iter().enumerate().map(|(i, &a)| (a, (i as u64 + 1) * 13)).collect();
        for cap in [7, 10, 50, 100, 200, 363, 364, 1_000] {
            let shares = queue_shares(&pending, cap);
            let total: u64 = shares.iter().map(|&(_, n)| u64::from(n)).sum();
            let queued: u64 = pending.iter().map(|p| p.1).sum();
            assert_eq!(total, queued.min(u64::from(cap)), "cap {cap}: {shares:?}");
            for (&(a, n), &(b, q)) in shares.iter().zip(&pending) {
                assert_eq!(a, b);
                assert!(u64::from(n) <= q && n >= 1);
            }
        }
    }
}
