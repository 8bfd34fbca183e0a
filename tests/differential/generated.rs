//! The generated cases of a run: seeds, case count and families from the environment.

use super::*;

fn env_var<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
    )
}

/// The generated cases: `(seed, count)` pairs, families from [`ENABLED`] (or
/// `PGROUTE_DIFF_FAMILIES`) in turn.
pub(crate) fn generated_cases() -> Vec<Case> {
    let seeds: Vec<(u64, usize)> = match env_var::<u64>("PGROUTE_DIFF_SEED") {
        Some(seed) => vec![(seed, env_var("PGROUTE_DIFF_CASES").unwrap_or(DEFAULT_CASES))],
        None => {
            let cases = env_var("PGROUTE_DIFF_CASES").unwrap_or(DEFAULT_CASES);
            let clock = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            vec![(DEFAULT_SEED, cases), (clock, cases)]
        }
    };
    let families: Vec<String> = match std::env::var("PGROUTE_DIFF_FAMILIES") {
        Ok(list) => list.split(',').map(|f| f.trim().to_owned()).collect(),
        Err(_) => ENABLED.iter().map(|f| f.to_string()).collect(),
    };
    for f in &families {
        assert!(FAMILIES.contains(&f.as_str()), "unknown family {f:?}");
    }
    let mut cases = Vec::new();
    for (seed, count) in seeds {
        eprintln!("differential: seed {seed} (PGROUTE_DIFF_SEED={seed}), {count} cases");
        for index in 0..count {
            let family = &families[index % families.len()];
            let mut rng = Rng::new(seed, index as u64);
            cases.push(Case {
                family: family.clone(),
                origin: format!("PGROUTE_DIFF_SEED={seed} #{index}"),
                steps: diff_gen::generate(family, &mut rng),
            });
        }
    }
    cases
}
