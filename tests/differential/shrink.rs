//! Shrinking a differing case: steps dropped one at a time while the same kind of difference
//! remains.

use super::*;

/// Drops steps one at a time while a difference remains.
pub(crate) async fn shrink(env: &Env, outcome: Outcome) -> Outcome {
    let began = Instant::now();
    let mut best = outcome;
    loop {
        let mut progressed = false;
        // A terminal last step (Terminate, a truncated message, a vanishing client, a raw
        // startup) is what the case is about: it stays.
        let keep_last = best.case.steps.last().is_some_and(is_terminal);
        let mut i = best.case.steps.len() - usize::from(keep_last);
        while i > 0 && began.elapsed() < SHRINK_BUDGET {
            i -= 1;
            let mut candidate = best.case.clone();
            candidate.steps.remove(i);
            let tried = run_case(env, &candidate).await;
            if tried.differs() && tried.signature == best.signature {
                best = tried;
                progressed = true;
            }
        }
        if !progressed || began.elapsed() >= SHRINK_BUDGET {
            return best;
        }
    }
}

fn is_terminal(step: &Step) -> bool {
    matches!(
        step,
        Step::Terminate | Step::Truncated { .. } | Step::Vanish | Step::RawStartup(_)
    )
}
