//! The store's tests of where it is: PostgreSQL URLs parsed, pointed at another database and
//! shown without their password, TLS to PostgreSQL, a clear error for a bad or unreachable one.

use super::*;

#[test]
fn a_bad_postgres_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    let err = format!(
        "{:#}",
        Store::connect("postgres://u:hunter2@h:notaport/db", PgOptions::default())
            .err()
            .unwrap()
    );
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..PgOptions::default()
    };
    let url = format!("postgres://granted:hunter2@127.0.0.1:{port}/granted");
    let err = format!("{:#}", Store::connect(&url, options).err().unwrap());
    assert!(err.contains("could not connect to"), "{err}");
    assert!(err.contains("granted:***@127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_url_is_pointed_at_another_database() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "g_1"),
        "postgres://u:p@h:5432/g_1"
    );
    assert_eq!(with_database("postgres://h", "g_1"), "postgres://h/g_1");
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "g_1"),
        "postgresql://h/g_1?sslmode=disable"
    );
}

#[test]
fn postgres_over_tls_checks_the_certificate() {
    let mut cluster = crate::testing::Cluster::new().unwrap();
    let ca = cluster.enable_tls().unwrap();
    cluster.start().unwrap();
    // The administrator's own connection skips TLS (it trusts no test CA).
    let admin = PgServer::connect(&format!("{}?sslmode=disable", cluster.url())).unwrap();
    let made = admin.create("tls").unwrap();
    let url = made.split('?').next().unwrap();
    let options = |ca_file: Option<std::path::PathBuf>| PgOptions {
        ca_file,
        connect_timeout: std::time::Duration::from_secs(1),
        ..PgOptions::default()
    };
    let ssl = |store: &Store| -> bool {
        store
            .read(|db| {
                db.value(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
            })
            .unwrap()
    };
    // Trusting the server's certificate: TLS, whether required or only preferred.
    let required = format!("{url}?sslmode=require");
    assert!(ssl(
        &Store::connect(&required, options(Some(ca.clone()))).unwrap()
    ));
    assert!(ssl(&Store::connect(url, options(Some(ca))).unwrap()));
    // Not trusting it: refused, and the error says why.
    let err = format!(
        "{:#}",
        Store::connect(&required, options(None)).err().unwrap()
    );
    assert!(err.contains("certificate"), "{err}");
    // `sslmode=disable`: no TLS, nothing to trust.
    let plain = format!("{url}?sslmode=disable");
    assert!(!ssl(&Store::connect(&plain, options(None)).unwrap()));
}

#[test]
fn locations_and_redaction() {
    assert_eq!(
        Location::parse("postgres://h/db"),
        Location::Postgres("postgres://h/db".into())
    );
    assert_eq!(
        Location::parse("postgresql://h/db"),
        Location::Postgres("postgresql://h/db".into())
    );
    assert_eq!(
        Location::parse("granted.db"),
        Location::File("granted.db".into())
    );
    for (url, shown) in [
        (
            "postgres://u:secret@h:5432/db",
            "postgres://u:***@h:5432/db",
        ),
        // The port is always named (5432 when the URL gives none).
        ("postgres://u@h/db", "postgres://u@h:5432/db"),
        ("postgres://h/db", "postgres://h:5432/db"),
        (
            "postgres://h/db?user=u&password=secret&sslmode=disable",
            "postgres://u:***@h:5432/db?sslmode=disable",
        ),
        (
            "not a url at all",
            "(a PostgreSQL URL that does not parse, not shown)",
        ),
    ] {
        assert_eq!(redact_url(url), shown);
    }
    // A `Location`'s `Debug` is redacted as well.
    let location = Location::parse("postgres://u:secret@h/db");
    assert!(!format!("{location:?}").contains("secret"));
}

/// The redaction used to cut the password out of the URL's text, and a password with `/` in
/// it came through whole: it is now rebuilt from the parsed settings.
#[test]
fn a_password_with_url_characters_never_shows_in_a_redacted_url() {
    // (the password as the URL spells it, as the server gets it)
    let passwords = [
        ("s3/cr3t/pw", "s3/cr3t/pw"),
        ("s3cr?t?pw", "s3cr?t?pw"),
        ("s3:cr:3t", "s3:cr:3t"),
        ("s3%2Fcr%2F3t", "s3/cr/3t"),
        ("s3%40cr%403t", "s3@cr@3t"),
        ("p%3Fw%3Ax%25y", "p?w:x%y"),
    ];
    for (spelled, decoded) in passwords {
        for url in [
            format!("postgres://granted:{spelled}@db.example:6543/tokens"),
            format!("postgresql://granted:{spelled}@db.example:6543/tokens?sslmode=require"),
            format!("postgres://db.example:6543/tokens?user=granted&password={spelled}"),
        ] {
            let shown = redact_url(&url);
            check_redacted(&url, &shown, &[spelled, decoded]);
            assert!(
                shown.starts_with("postgres://granted:***@db.example:6543/tokens"),
                "{shown}"
            );
            assert_eq!(Location::parse(&url).redacted(), shown);
        }
        // The key=value form: its password is the value as written.
        let kv = format!(
            "host=db.example port=6543 user=granted dbname=tokens password='{}'",
            decoded.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let shown = redact_url(&kv);
        check_redacted(&kv, &shown, &[decoded]);
        assert_eq!(shown, "postgres://granted:***@db.example:6543/tokens");
    }
    // An `@` that was not percent-encoded ends the user part early: the driver reads the rest
    // of the password as the host, which is then not shown either.
    let shown = redact_url("postgres://granted:p@ss@db.example:6543/tokens");
    assert_eq!(shown, "postgres://granted:***@***:6543/tokens");
}

fn check_redacted(url: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{url} shown as {shown}");
    }
    for part in ["granted", "db.example", "6543", "tokens"] {
        assert!(shown.contains(part), "{url} shown as {shown}: no {part}");
    }
}
