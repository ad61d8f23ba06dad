//! The assignment solver's parts that `cargo xtask mutants economics`
//! found no test checking: each test here fails with the mutant it names
//! (see the README's testing section).

use mabeam_economics::hungarian;

// Forbidden pairs must cost more than any allowed assignment even when
// the allowed costs are small: with costs of 1, the forbidden pair is
// never taken (mutant: its price `(max + 1) * (n + 1)` as `(max - 1) *
// (n + 1)`, free when the costs are 1, so the solver took it and found
// no assignment).
#[test]
fn small_costs_never_make_a_forbidden_pair_cheap() {
    let costs = vec![vec![Some(1.0), None], vec![Some(1.0), Some(1.0)]];
    assert_eq!(hungarian(&costs), Some(vec![0, 1]));
}
