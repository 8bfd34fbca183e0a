//! The regression files under tests/differential-regressions/: replayed first on every run,
//! written for every new difference once shrunk.

use super::*;

fn regression_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential-regressions")
}

pub(crate) fn load_regressions() -> Vec<Case> {
    let Ok(dir) = std::fs::read_dir(regression_dir()) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            let name = p.file_name().map(|f| f.to_string_lossy().into_owned());
            Case::from_text(&text, &name.unwrap_or_default())
                .unwrap_or_else(|e| panic!("regression case {p:?}: {e}"))
        })
        .collect()
}

/// Saves `case` as a regression file named after its family and contents.
pub(crate) fn save_regression(case: &Case) -> PathBuf {
    let text = case.to_text();
    let body: String = text.lines().filter(|l| !l.starts_with('#')).collect();
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = regression_dir().join(format!("{}-{:08x}.case", case.family, hash as u32));
    let _ = std::fs::create_dir_all(regression_dir());
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("could not save {path:?}: {e}");
    }
    path
}
