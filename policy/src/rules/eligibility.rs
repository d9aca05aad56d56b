//! Password-grant eligibility of a revision (R1–R4) and the reason code of §2.

use crate::model::{GrantType, Revision, Timestamp};
use serde::{Deserialize, Serialize};

/// Why a revision is not password-eligible (RULES.md §2), as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// The revision's grant type is not `password`.
    NotPasswordApp,
    /// R1: the app was created on or after the sunset.
    AppCreatedAfterSunset,
    /// R4: an earlier revision left the password grant.
    GrantTypeReverted,
    /// R3: the `client_id` changed on or after the sunset.
    ClientIdChanged,
}

impl Ineligible {
    /// The reason code of RULES.md §2.
    pub fn code(self) -> &'static str {
        match self {
            Ineligible::NotPasswordApp => "not_password_app",
            Ineligible::AppCreatedAfterSunset => "app_created_after_sunset",
            Ineligible::GrantTypeReverted => "grant_type_reverted",
            Ineligible::ClientIdChanged => "client_id_changed",
        }
    }

    /// The rule of RULES.md §2 that this reason comes from.
    pub fn rule(self) -> &'static str {
        match self {
            Ineligible::NotPasswordApp => "T4",
            Ineligible::AppCreatedAfterSunset => "R1",
            Ineligible::GrantTypeReverted => "R4",
            Ineligible::ClientIdChanged => "R3",
        }
    }
}

/// Whether `revisions[index]` may use the password grant, walking back from it
/// to the nearest cause (RULES.md §2). Only revisions up to `index` are read.
/// An index past the end is judged as an app with no such revision:
/// `app_created_after_sunset` cannot be told from it, so it answers `not_password_app`.
pub fn password_eligibility(
    revisions: &[Revision],
    index: usize,
    sunset: Timestamp,
) -> Result<(), Ineligible> {
    let Some(r) = revisions.get(index) else {
        return Err(Ineligible::NotPasswordApp);
    };
    if r.grant_type != GrantType::Password {
        return Err(Ineligible::NotPasswordApp);
    }
    let mut c = index;
    loop {
        let Some(current) = revisions.get(c) else {
            return Err(Ineligible::NotPasswordApp);
        };
        if current.at < sunset {
            return Ok(());
        }
        let Some(p) = c.checked_sub(1) else {
            return Err(Ineligible::AppCreatedAfterSunset);
        };
        let Some(prev) = revisions.get(p) else {
            return Err(Ineligible::AppCreatedAfterSunset);
        };
        if prev.grant_type != GrantType::Password {
            return Err(Ineligible::GrantTypeReverted);
        }
        if prev.client_id != current.client_id {
            return Err(Ineligible::ClientIdChanged);
        }
        c = p;
    }
}

/// `password_eligibility(..).is_ok()`.
pub fn is_password_eligible(revisions: &[Revision], index: usize, sunset: Timestamp) -> bool {
    password_eligibility(revisions, index, sunset).is_ok()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)] // tests: a failure is the point
mod tests {
    use super::*;
    use crate::model::default_sunset;
    use proptest::prelude::*;

    /// The definition of RULES.md §2, written as the recursion it states.
    fn eligible_by_definition(revs: &[Revision], i: usize, s: Timestamp) -> bool {
        let r = &revs[i];
        r.grant_type == GrantType::Password
            && (r.at < s
                || (i > 0
                    && eligible_by_definition(revs, i - 1, s)
                    && revs[i - 1].client_id == r.client_id))
    }

    fn grant() -> impl Strategy<Value = GrantType> {
        prop_oneof![
            3 => Just(GrantType::Password),
            1 => Just(GrantType::ClientCredentials),
            1 => Just(GrantType::AuthorizationCode),
            1 => Just(GrantType::Implicit),
        ]
    }

    /// Histories with non-decreasing instants around the sunset and few client ids.
    fn history() -> impl Strategy<Value = Vec<Revision>> {
        let s = default_sunset().unix();
        proptest::collection::vec((0i64..200_000_000, grant(), 0u8..3), 1..12).prop_map(
            move |steps| {
                let mut at = s - 100_000_000;
                steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (gap, grant_type, client))| {
                        at += gap / 4;
                        Revision {
                            rev: i as u32 + 1,
                            at: Timestamp::from_unix(at).unwrap(),
                            client_id: format!("c{client}"),
                            grant_type,
                            scopes: vec!["read".into()],
                            redirect_uris: Vec::new(),
                            client_type: crate::model::ClientType::Confidential,
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn walk_agrees_with_the_recursive_definition(revs in history()) {
            let s = default_sunset();
            for i in 0..revs.len() {
                prop_assert_eq!(
                    is_password_eligible(&revs, i, s),
                    eligible_by_definition(&revs, i, s),
                    "revision {} of {:?}", i + 1, revs
                );
            }
        }

        #[test]
        fn the_reason_names_the_nearest_cause(revs in history()) {
            let s = default_sunset();
            for i in 0..revs.len() {
                match password_eligibility(&revs, i, s) {
                    Ok(()) => {}
                    Err(Ineligible::NotPasswordApp) => prop_assert!(revs[i].grant_type != GrantType::Password),
                    Err(reason) => {
                        // The nearest break going back: the first j < i whose link to j+1 fails.
                        let mut j = i;
                        let expected = loop {
                            if j == 0 { break Ineligible::AppCreatedAfterSunset; }
                            let (p, c) = (&revs[j - 1], &revs[j]);
                            if p.grant_type != GrantType::Password { break Ineligible::GrantTypeReverted; }
                            if p.client_id != c.client_id { break Ineligible::ClientIdChanged; }
                            j -= 1;
                        };
                        prop_assert_eq!(reason, expected);
                    }
                }
            }
        }
    }

    #[test]
    fn index_past_the_end_is_not_eligible() {
        assert_eq!(
            password_eligibility(&[], 3, default_sunset()),
            Err(Ineligible::NotPasswordApp)
        );
    }
}
