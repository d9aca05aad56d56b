//! The store's tests of a tenant's identity provider (RULES.md §6): stored with its secret
//! sealed, read back without it, served with the tenant's records and its cache, rewrapped with
//! the server keys; and an `sso` user's federated subject, set once and never shared.

use super::*;
use granted_policy::model::FederatedSubject;

fn acme() -> TenantRecord {
    TenantRecord {
        tenant: "acme".into(),
        sso_required: true,
        password_max_age_days: None,
        installs: vec![],
        identity_provider: None,
    }
}

fn provider() -> IdentityProvider {
    IdentityProvider {
        issuer: "https://idp.acme.example".into(),
        client_id: "granted-acme".into(),
        scopes: vec!["openid".into(), "profile".into()],
        username_claim: "preferred_username".into(),
        link_existing: true,
        provision: false,
    }
}

/// The stored text of `tenant`'s provider secret.
fn stored_secret(store: &Store, tenant: &str) -> Option<String> {
    store
        .read(|db| {
            db.opt(
                "SELECT client_secret FROM identity_providers WHERE tenant = ?1",
                &[&tenant],
                |r| r.get(0),
            )
        })
        .unwrap()
}

/// The tenant as a token request's records read it (through the records cache).
fn tenant_as_read(store: &Store) -> Option<TenantRecord> {
    let lookup = Lookup {
        tenant: "acme".into(),
        client_id: "nobody".into(),
        ..Lookup::default()
    };
    store.records(&lookup).unwrap().tenant.flatten()
}

on_both!(
    an_identity_provider_is_sealed_read_back_without_its_secret_and_removed,
    |store| {
        let (store, _) = store
            .with_master_key(MasterKey::from_bytes([7; MASTER_KEY_LEN]))
            .unwrap();
        store.write(|w| w.put_tenant(&acme())).unwrap();
        assert_eq!(tenant_as_read(&store).unwrap().identity_provider, None);
        store
            .write(|w| {
                w.put_identity_provider(
                    "acme",
                    Some((&provider(), ProviderSecret::Clear("s3cret"))),
                )
            })
            .unwrap();
        assert_eq!(store.identity_provider("acme").unwrap(), Some(provider()));
        let stored = stored_secret(&store, "acme").unwrap();
        assert!(stored.starts_with("sealed1:") && !stored.contains("s3cret"));
        assert_eq!(
            store
                .identity_provider_secret("acme")
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("s3cret")
        );
        // The tenant's records carry it, past the records cache (a provider's change bumps the
        // records' version like a tenant's).
        assert_eq!(
            tenant_as_read(&store).unwrap().identity_provider,
            Some(provider())
        );
        let changed = IdentityProvider {
            scopes: vec!["openid".into()],
            ..provider()
        };
        store
            .write(|w| w.put_identity_provider("acme", Some((&changed, ProviderSecret::Keep))))
            .unwrap();
        assert_eq!(
            tenant_as_read(&store).unwrap().identity_provider,
            Some(changed)
        );
        assert_eq!(
            stored_secret(&store, "acme").unwrap(),
            stored,
            "the secret is kept"
        );
        // Keeping a secret that is not there, or a sealed one that does not open here: refused,
        // nothing written.
        store
            .write(|w| {
                w.put_tenant(&TenantRecord {
                    tenant: "globex".into(),
                    ..acme()
                })
            })
            .unwrap();
        let kept = store.write(|w| {
            w.put_identity_provider("globex", Some((&provider(), ProviderSecret::Keep)))
        });
        assert!(kept
            .unwrap_err()
            .to_string()
            .contains("needs a client secret"));
        let other = MasterKey::from_bytes([8; MASTER_KEY_LEN]);
        let foreign = super::super::seal::seal(&other, "identity_provider", "globex", "x").unwrap();
        let sealed = store.write(|w| {
            w.put_identity_provider(
                "globex",
                Some((&provider(), ProviderSecret::Sealed(&foreign))),
            )
        });
        assert!(sealed.is_err());
        assert_eq!(store.identity_provider("globex").unwrap(), None);
        // An exported sealed secret imports again under the same master key, for its own
        // tenant only (the tenant is bound into the seal).
        let exported = store
            .identity_provider_sealed_secret("acme")
            .unwrap()
            .unwrap();
        store
            .write(|w| {
                w.put_identity_provider(
                    "globex",
                    Some((&provider(), ProviderSecret::Sealed(&exported))),
                )
            })
            .unwrap_err();
        store
            .write(|w| {
                w.put_identity_provider(
                    "acme",
                    Some((&provider(), ProviderSecret::Sealed(&exported))),
                )
            })
            .unwrap();
        assert_eq!(
            store
                .identity_provider_secret("acme")
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("s3cret")
        );
        store
            .write(|w| w.put_identity_provider("acme", None))
            .unwrap();
        assert_eq!(store.identity_provider("acme").unwrap(), None);
        assert_eq!(tenant_as_read(&store).unwrap().identity_provider, None);
    }
);

on_both!(
    a_provider_secret_in_clear_is_sealed_by_a_master_key_and_rewrapped,
    |store| {
        store.write(|w| w.put_tenant(&acme())).unwrap();
        store
            .write(|w| {
                w.put_identity_provider(
                    "acme",
                    Some((&provider(), ProviderSecret::Clear("s3cret"))),
                )
            })
            .unwrap();
        assert_eq!(stored_secret(&store, "acme").as_deref(), Some("s3cret"));
        assert_eq!(store.identity_provider_sealed_secret("acme").unwrap(), None);
        let (k1, k2) = (
            MasterKey::from_bytes([1; MASTER_KEY_LEN]),
            MasterKey::from_bytes([2; MASTER_KEY_LEN]),
        );
        let (sealed, done) = store.clone().with_master_key(k1.clone()).unwrap();
        assert_eq!(
            done.sealed_from_clear, 1,
            "no server keys yet: only the provider's"
        );
        assert!(stored_secret(&store, "acme")
            .unwrap()
            .starts_with("sealed1:"));
        let done = sealed.rewrap_keys(Some(&k1), &k2).unwrap();
        assert_eq!(done.resealed, 1);
        let (under_k2, done) = store.clone().with_master_key(k2).unwrap();
        assert_eq!(done.unchanged, 1);
        assert_eq!(
            under_k2
                .identity_provider_secret("acme")
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("s3cret")
        );
        assert!(
            sealed.identity_provider_secret("acme").is_err(),
            "k1 opens it no more"
        );
    }
);

on_both!(
    a_federated_subject_is_set_once_and_belongs_to_one_user_of_a_tenant,
    |store| {
        let subject = |sub: &str| FederatedSubject {
            iss: "https://idp.acme.example".into(),
            sub: sub.into(),
        };
        let user = |name: &str, sub: &str| UserRecord {
            username: name.into(),
            sub: Some(format!("sub-{name}")),
            sign_in: SignIn::Sso,
            password_hash: None,
            password_changed_at: None,
            disabled: false,
            locked_until: None,
            federated_subject: Some(subject(sub)),
        };
        store.write(|w| w.put_tenant(&acme())).unwrap();
        store
            .write(|w| w.put_user("acme", &user("carol", "248289761001")))
            .unwrap();
        let read = |name: &str| {
            let lookup = Lookup {
                tenant: "acme".into(),
                client_id: "nobody".into(),
                username: Some(name.into()),
                ..Lookup::default()
            };
            store.records(&lookup).unwrap().user.flatten()
        };
        assert_eq!(
            read("carol").unwrap().federated_subject,
            Some(subject("248289761001"))
        );
        // Written again with another subject: the first one stays (never changed).
        store
            .write(|w| w.put_user("acme", &user("carol", "other")))
            .unwrap();
        assert_eq!(
            read("carol").unwrap().federated_subject,
            Some(subject("248289761001"))
        );
        // No two users of a tenant share one.
        assert!(store
            .write(|w| w.put_user("acme", &user("dave", "248289761001")))
            .is_err());
        assert_eq!(read("dave"), None);
    }
);
