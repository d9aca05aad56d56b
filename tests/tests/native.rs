//! Every vector through the policy linked natively.

use granted_vectors::{default_dirs, driver::Settings, run_dir, Native};

#[test]
fn every_vector_passes_natively() {
    let mut report = Vec::new();
    let mut failed = 0;
    for dir in default_dirs() {
        let summary =
            run_dir(&Native, &dir, &Settings::default(), &mut report).expect("vector directory");
        failed += summary.failed;
    }
    let report = String::from_utf8_lossy(&report);
    println!("{report}");
    assert_eq!(failed, 0, "{report}");
}
