//! Running the cases in batches and judging each outcome: tallied, reported, shrunk and saved
//! when new, a failure unless its family is known to differ.

use super::*;

/// The state of one test run.
pub(crate) struct Run {
    pub(crate) env: Env,
    pub(crate) shrink_known: bool,
    /// Shrinking stops for the rest of the run after this much time in total.
    pub(crate) shrink_budget: Duration,
    pub(crate) shrinking: Duration,
    pub(crate) tally: BTreeMap<String, Tally>,
    pub(crate) failures: Vec<String>,
}

impl Run {
    pub(crate) async fn batch(&mut self, number: usize, batch: &[Case]) {
        let began = Instant::now();
        let env = &self.env;
        let outcomes = futures::future::join_all(batch.iter().map(|c| run_case(env, c))).await;
        if let Some(left) = outstanding_settles(env).await {
            let origins: Vec<String> = batch
                .iter()
                .map(|c| format!("{} {}", c.family, c.origin))
                .collect();
            let msg = format!(
                "pgroute still counts {left} outstanding clients {SETTLE:?} after batch \
                 {number}: {origins:?}"
            );
            eprintln!("{msg}");
            if batch
                .iter()
                .any(|c| !KNOWN_DIFFERENT.contains(&c.family.as_str()))
            {
                self.failures.push(msg);
            }
        }
        for o in outcomes {
            self.judge(o).await;
        }
        if began.elapsed() > Duration::from_secs(3) {
            eprintln!("batch {number} took {:?}", began.elapsed());
        }
    }

    /// Counts, reports, shrinks and saves one outcome.
    async fn judge(&mut self, o: Outcome) {
        let family = o.case.family.clone();
        let known = KNOWN_DIFFERENT.contains(&family.as_str());
        let t = self.tally.entry(family.clone()).or_default();
        t.cases += 1;
        if let Some(why) = &o.invalid {
            t.invalid += 1;
            eprintln!("invalid case ({why}):\n{}", report(&o, "INVALID"));
            return;
        }
        if !o.differs() {
            return;
        }
        t.differing += 1;
        let signature = o.signature.clone().unwrap_or_default();
        let seen = t.signatures.contains(&signature);
        if !seen {
            t.signatures.push(signature);
        }
        let replayed = o.case.origin.ends_with(".case");
        let label = if known {
            "KNOWN DIFFERENCE"
        } else {
            "DIFFERENCE"
        };
        let shrinkable = (!known || self.shrink_known) && !replayed && !seen;
        let text = if shrinkable && self.shrinking < self.shrink_budget {
            let began = Instant::now();
            let shrunk = shrink(&self.env, o).await;
            self.shrinking += began.elapsed();
            let path = save_regression(&shrunk.case);
            format!("{}--- saved as {path:?}\n", report(&shrunk, label))
        } else if seen && !replayed {
            return;
        } else {
            report(&o, &format!("{label} (not shrunk)"))
        };
        let t = self.tally.entry(family).or_default();
        if known {
            t.example.get_or_insert_with(|| text.clone());
            if self.shrink_known {
                eprintln!("{text}");
            }
        } else {
            eprintln!("{text}");
            self.failures.push(text);
        }
    }
}
