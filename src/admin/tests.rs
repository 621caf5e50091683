//! The admin command line's parsing.

use super::AdminArgs;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
}

/// A registered client id is base64url, so one in 64 begins with `-`: it is still an id.
#[test]
fn client_ids_beginning_with_a_hyphen_are_ids() {
    for args in [
        &["x", "grants", "revoke", "--client", "-jJt5ChrJRCakr4Zvtw"][..],
        &["x", "grants", "list", "--user", "alice", "--client", "-a"],
        &["x", "clients", "show", "-jJt5ChrJRCakr4Zvtw"],
        &["x", "clients", "delete", "-jJt5ChrJRCakr4Zvtw"],
    ] {
        assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
    }
}
