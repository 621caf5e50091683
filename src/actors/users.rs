//! `Users`: the users who can sign in, by name. The actor owns the running server's copy of the
//! users table (or the demo users when there is none) so that `mcp-oauth admin` can add a user,
//! set a password or disable one while the server runs: the `StoreChanges` actor tells it to
//! reload. The password check itself runs outside the actor, on a blocking thread
//! ([`crate::users::PasswordChecks`]): the actor only hands out the record.

use crate::store::{SharedStore, StoreError};
use crate::trace::TypedUserName;
use crate::users::{LoadedUsers, User};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;

/// The user with this name, disabled or not (the password check treats a disabled user as an
/// unknown one, at the same cost). The name is traced as a keyed fingerprint.
#[derive(Debug)]
pub struct FindUser {
    pub username: TypedUserName,
}

/// Are the users the demo users (whose passwords the login page may name)?
#[derive(Debug)]
pub struct UsersAreDemo;

/// Reloads the users from the store; answers how many there are. With no stored users the
/// users stay as they are (the demo users).
#[derive(Debug)]
pub struct ReloadUsers;

#[derive(Debug, Clone)]
pub struct UsersArgs {
    pub loaded: LoadedUsers,
    pub store: SharedStore,
}

pub struct Users {
    users: HashMap<String, User>,
    demo: bool,
    store: SharedStore,
}

impl Users {
    fn take(&mut self, users: Vec<User>, demo: bool) {
        self.users = users.into_iter().map(|u| (u.username.clone(), u)).collect();
        self.demo = demo;
    }

    async fn reload(&mut self) -> Result<usize, StoreError> {
        let stored = self.store.users().await?;
        if !stored.is_empty() {
            self.take(stored.into_iter().map(User::from).collect(), false);
        }
        Ok(self.users.len())
    }
}

impl Actor for Users {
    type Args = UsersArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Users"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut users = Users {
            users: HashMap::new(),
            demo: false,
            store: args.store,
        };
        users.take(args.loaded.users, args.loaded.demo);
        // A restart after a panic takes the store's users, which may have changed since start.
        if let Err(err) = users.reload().await {
            tracing::warn!(actor = "Users", error = %err, "users not reloaded; keeping those of the start");
        }
        Ok(users)
    }
}

impl Message<FindUser> for Users {
    type Reply = Option<User>;

    async fn handle(&mut self, msg: FindUser, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.users.get(msg.username.expose()).cloned()
    }
}

impl Message<UsersAreDemo> for Users {
    type Reply = bool;

    async fn handle(&mut self, _: UsersAreDemo, _: &mut Context<Self, bool>) -> bool {
        self.demo
    }
}

impl Message<ReloadUsers> for Users {
    type Reply = Result<usize, StoreError>;

    async fn handle(&mut self, _: ReloadUsers, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.reload().await
    }
}
