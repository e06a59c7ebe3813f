//! "Did you mean": the one rule every message uses to name the closest
//! valid name when a plan, a runbook or a mapping names one that does not
//! exist (normalized Damerau–Levenshtein similarity, crate `strsim`).

/// How similar (0 to 1) a name must be to be suggested.
const CLOSE_ENOUGH: f64 = 0.5;

/// The candidate most similar to `bad`, when it is close enough.
pub fn closest<'a>(bad: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(bad, c), c))
        .filter(|(score, _)| *score >= CLOSE_ENOUGH)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `` — did you mean `x`?`` for the [`closest`] candidate, or nothing.
pub fn did_you_mean<'a>(bad: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(bad, candidates).map(|c| format!(" — did you mean `{c}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_closest_only_when_close() {
        assert_eq!(closest("parallelsm", ["chunk_rows", "parallelism"]), Some("parallelism"));
        assert_eq!(closest("xyz", ["parallelism"]), None);
        assert_eq!(did_you_mean("retrys", ["retries", "timeout"]), " — did you mean `retries`?");
        assert_eq!(did_you_mean("zzz", ["retries"]), "");
    }
}
