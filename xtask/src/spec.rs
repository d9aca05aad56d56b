//! The spec that travels with the project: `spec/` and `seed/` are copies of `../shared/spec`
//! and `../shared/seed`. When the shared ones are beside the checkout, the copies must equal
//! them byte for byte (a change there is never missed); when they are not, the copies alone
//! are the contract.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders of the repository that copy a shared folder, as (copy, original) relative to the
/// workspace root.
const COPIES: [(&str, &str); 2] = [("spec", "../shared/spec"), ("seed", "../shared/seed")];

/// Checks every copy against its original; says so in one line when the originals are absent.
pub fn check(root: &Path) -> Result<()> {
    let mut differences = Vec::new();
    let mut absent = Vec::new();
    for (copy, original) in COPIES {
        let copy = root.join(copy);
        if !copy.is_dir() {
            bail!(
                "{} is missing: the spec travels with the project",
                copy.display()
            );
        }
        if !root.join(original).is_dir() {
            absent.push(original);
            continue;
        }
        differences.extend(compare(&copy, &root.join(original))?);
    }
    if !absent.is_empty() {
        println!(
            "{} absent beside the checkout: testing against the repository's copy alone",
            absent.join(" and ")
        );
    }
    if !differences.is_empty() {
        bail!(
            "the repository's copy of the shared spec differs from ../shared (copy the shared files over, then review what changed):\n  {}",
            differences.join("\n  ")
        );
    }
    Ok(())
}

/// The files that differ between two trees, or stand in only one of them, one line each.
fn compare(copy: &Path, original: &Path) -> Result<Vec<String>> {
    let ours = files(copy)?;
    let theirs = files(original)?;
    let mut out = Vec::new();
    for rel in ours.union(&theirs) {
        let (a, b) = (copy.join(rel), original.join(rel));
        let line = match (ours.contains(rel), theirs.contains(rel)) {
            (true, false) => format!("{} is not in {}", a.display(), original.display()),
            (false, true) => format!("{} has no copy in {}", b.display(), copy.display()),
            _ => {
                let same = std::fs::read(&a).with_context(|| format!("reading {}", a.display()))?
                    == std::fs::read(&b).with_context(|| format!("reading {}", b.display()))?;
                if same {
                    continue;
                }
                format!("{} differs from {}", a.display(), b.display())
            }
        };
        out.push(line);
    }
    Ok(out)
}

/// Every file below `dir`, as a path relative to it.
fn files(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let entries =
            std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", at.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.insert(rel.to_path_buf());
            }
        }
    }
    Ok(out)
}
