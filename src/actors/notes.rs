//! `Notes`: the notes users save with the MCP tool `save_note` and read back with `list_notes`,
//! so that the `mcp.write` scope guards a real write. The resource server shares nothing with
//! other processes but its configuration, so the notes live in this actor's memory: they are
//! lost when the server stops. Bounded: a user keeps the [`MAX_NOTES_PER_USER`] most recent
//! notes, of at most [`MAX_NOTE_CHARS`] characters, and at most [`MAX_USERS`] users have notes
//! (beyond, a new user's note is refused).

use crate::oauth::time::unix_now;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Notes kept per user; a new one beyond this pushes out the oldest.
pub const MAX_NOTES_PER_USER: usize = 100;
/// Characters kept of a note.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Users who may have notes at once.
pub const MAX_USERS: usize = 10_000;

/// One saved note.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub text: String,
    /// Unix seconds.
    pub saved_at: u64,
}

/// Saves a note for a user; answers how many notes the user now has.
pub struct SaveNote {
    pub subject: Arc<str>,
    pub text: String,
}

/// The note's text stays out of the trace: its length only.
impl std::fmt::Debug for SaveNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveNote")
            .field("subject", &self.subject)
            .field("chars", &self.text.chars().count())
            .finish()
    }
}

/// The user's notes, oldest first.
#[derive(Debug)]
pub struct ListNotes {
    pub subject: Arc<str>,
}

/// Too many users have notes: this one's is not saved.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many users have notes")]
pub struct NotesFull;

#[derive(Default)]
pub struct Notes {
    notes: HashMap<Arc<str>, VecDeque<Note>>,
}

impl Actor for Notes {
    type Args = ();
    type Error = Infallible;

    fn name() -> &'static str {
        "Notes"
    }

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Notes::default())
    }
}

impl Message<SaveNote> for Notes {
    type Reply = Result<usize, NotesFull>;

    async fn handle(&mut self, msg: SaveNote, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if !self.notes.contains_key(&msg.subject) && self.notes.len() >= MAX_USERS {
            return Err(NotesFull);
        }
        let notes = self.notes.entry(msg.subject).or_default();
        if notes.len() >= MAX_NOTES_PER_USER {
            notes.pop_front();
        }
        notes.push_back(Note {
            text: msg.text.chars().take(MAX_NOTE_CHARS).collect(),
            saved_at: unix_now(),
        });
        Ok(notes.len())
    }
}

impl Message<ListNotes> for Notes {
    type Reply = Vec<Note>;

    async fn handle(&mut self, msg: ListNotes, _: &mut Context<Self, Vec<Note>>) -> Vec<Note> {
        self.notes
            .get(&msg.subject)
            .map(|notes| notes.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn save(subject: &str, text: &str) -> SaveNote {
        SaveNote {
            subject: Arc::from(subject),
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn notes_are_kept_per_user_and_bounded() {
        let notes = Notes::spawn(());
        assert_eq!(notes.ask(save("alice", "one")).await.unwrap(), 1);
        assert_eq!(notes.ask(save("alice", "two")).await.unwrap(), 2);
        notes.ask(save("bob", "his")).await.unwrap();
        let list = |s: &str| ListNotes {
            subject: Arc::from(s),
        };
        let texts = |v: Vec<Note>| v.into_iter().map(|n| n.text).collect::<Vec<_>>();
        assert_eq!(
            texts(notes.ask(list("alice")).await.unwrap()),
            ["one", "two"]
        );
        assert_eq!(texts(notes.ask(list("bob")).await.unwrap()), ["his"]);
        assert!(notes.ask(list("carol")).await.unwrap().is_empty());
        // The oldest gives way, and a long note is cut.
        for i in 0..MAX_NOTES_PER_USER {
            notes.ask(save("alice", &format!("n{i}"))).await.unwrap();
        }
        let kept = notes.ask(list("alice")).await.unwrap();
        assert_eq!(kept.len(), MAX_NOTES_PER_USER);
        assert_eq!(kept[0].text, "n0");
        notes
            .ask(save("bob", &"x".repeat(MAX_NOTE_CHARS + 10)))
            .await
            .unwrap();
        let bobs = notes.ask(list("bob")).await.unwrap();
        assert_eq!(bobs[1].text.chars().count(), MAX_NOTE_CHARS);
        // The trace shows a note's length, not its text.
        assert_eq!(
            format!("{:?}", save("alice", "secret plans")),
            "SaveNote { subject: \"alice\", chars: 12 }"
        );
    }
}
